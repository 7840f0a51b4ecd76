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

# `make` (the Makefile's entry points) and `git` (a dev container's source control) from Debian.
RUN apt-get update -q && apt-get install -y -q --no-install-recommends make git \
    && rm -rf /var/lib/apt/lists/*

# The packages first, from pyproject.toml alone (a stub of the kit, of the README and of the Jupyter config
# file it names): this slow layer is rebuilt only when pyproject.toml changes, not on every edit to the code
# or the docs.
COPY pyproject.toml ./
RUN mkdir workshop && touch workshop/__init__.py README.md && echo '{}' > workshop/jupyter_server_config.json \
    && pip install ".[dev]" \
    && rm -rf workshop README.md build ./*.egg-info
# Then the kit itself, and the chapters and solutions: compose mounts the checkout over /workshop, a
# container without that mount runs these.
COPY README.md ./
COPY workshop/ workshop/
COPY solutions/ solutions/
COPY chapters/ chapters/
RUN pip install --no-deps . && rm -rf build ./*.egg-info

# The user `workshop` (uid 1000) takes the uid of the checkout's owner when a container starts
# (docker/entrypoint.sh), and the command runs as it: Jupyter can save your notebooks. Its home is
# world-writable, whatever uid that turns out to be.
# /var/lib/workshop: the pipelines' files (SQLite, reports), in a volume: the checkout mounted at
# /workshop may belong to another uid, which could not write there.
# chmod: a checkout that lost the file's mode (a Windows clone) still starts.
COPY docker/entrypoint.sh /usr/local/bin/workshop-entrypoint
RUN useradd --create-home --uid 1000 workshop \
    && chmod 1777 /home/workshop \
    && mkdir -p /var/lib/workshop && chmod 1777 /var/lib/workshop \
    && chown -R workshop:workshop /workshop \
    && chmod 755 /usr/local/bin/workshop-entrypoint
# WORKSHOP_ENV_READY: this Python has every package the workshop needs, so the Makefile uses it as it
# is and creates no .venv (a dev container runs `make check-env`, `make test` here).
ENV HOME=/home/workshop \
    WORKSHOP_ENV_READY=1
ENTRYPOINT ["workshop-entrypoint"]

EXPOSE 8700 5555 8888
CMD ["python", "-m", "workshop", "api", "--host", "0.0.0.0", "--port", "8700"]
