// Nothing is downloaded: the slides render with Debian's Chromium (see slides/README.md).
module.exports = { skipDownload: true };
