# One image for every Python service in docker-compose.yml: the fake Stations API,
# the Celery worker(s) and beat, Flower and JupyterLab.
# Build it before the workshop, while you have a good network (this pulls
# python:3.11-slim and the packages from PyPI):   docker compose build
# Offline CI passes a base image it made itself (.ci/build-python-image.sh):
#   docker compose build --build-arg PYTHON_IMAGE=workshop-python-base:local
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

# PYTHONPATH: solutions/ and chapters/ are not installed packages; import them from /workshop.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/workshop

WORKDIR /workshop

# README.md: pyproject.toml names it as the package's readme, so the build needs it.
COPY pyproject.toml README.md ./
COPY workshop/ workshop/
COPY solutions/ solutions/
COPY chapters/ chapters/
RUN pip install ".[dev]"

# Run as a non-root user. Its home is world-writable so that Jupyter and Celery
# still work when compose runs the services as your own uid (WORKSHOP_USER).
# /var/lib/workshop: the pipelines' files (SQLite, reports), in a volume: the checkout mounted at
# /workshop may belong to another uid, which could not write there.
RUN useradd --create-home --uid 1000 workshop \
    && chmod 1777 /home/workshop \
    && mkdir -p /var/lib/workshop && chmod 1777 /var/lib/workshop \
    && chown -R workshop:workshop /workshop
ENV HOME=/home/workshop
USER workshop

EXPOSE 8700 5555 8888
CMD ["python", "-m", "workshop", "api", "--host", "0.0.0.0", "--port", "8700"]
