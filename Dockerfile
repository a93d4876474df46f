# qsmbids container image: a BIDS App for Quantitative Susceptibility Mapping.
#
#   docker build -t qsmbids:latest .
#   docker run --rm -v /data/bids:/data:ro -v /data/out:/out qsmbids:latest /data /out participant
#
# Build arguments
#   BASE_IMAGE   a Debian image that has python3 (>= 3.11) with its venv module.
#                CI builds on a local debootstrap base (see .ci/container).
#   FETCH_ATLAS  1 (default): download the default atlas at build time with
#                `qsmbids atlas fetch` (checksums verified); 0: skip it, and the image
#                then needs an atlas given at run time (see README, "Containers").
#   VERSION, VCS_REF, BUILD_DATE   image labels (org.opencontainers.image.*).
# Build secret (optional)
#   pip_cert     a CA bundle for pip and the atlas download behind a TLS-intercepting
#                proxy: --secret id=pip_cert,src=/etc/ssl/certs/ca-certificates.crt
#
# Versions are pinned by requirements/constraints.txt (the versions the test suite
# ran against; regenerate with requirements/update.sh).

ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------
# builder: a virtual environment in /opt/qsmbids with the package and its pinned
# dependencies (binary wheels preferred; the few pure-Python sdists build without
# a compiler, and none is installed).
FROM ${BASE_IMAGE} AS builder

# Each multi-command RUN starts with `set -eu`: podman's default OCI image format
# ignores SHELL, so it cannot be relied on to stop at the first failing command.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_PREFER_BINARY=1 \
    PIP_USE_PEP517=1 \
    PIP_CONSTRAINT=/src/requirements/constraints.txt \
    PYTHONDONTWRITEBYTECODE=1

RUN python3 -m venv /opt/qsmbids

# Dependencies first (read from pyproject.toml), so that a change to the code alone
# reuses this layer. The big scientific packages' own test suites (about 200 MB) are
# removed: nothing imports them at run time.
COPY pyproject.toml README.md LICENSE /src/
COPY requirements/constraints.txt /src/requirements/constraints.txt
# hadolint ignore=DL3013,DL3042
RUN --mount=type=secret,id=pip_cert \
    set -eu; \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    /opt/qsmbids/bin/python -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" > /src/requirements/runtime.txt; \
    /opt/qsmbids/bin/python -m pip install --requirement /src/requirements/runtime.txt; \
    for pkg in scipy numpy pandas sklearn statsmodels numba llvmlite skimage matplotlib; do \
      dir=$(echo /opt/qsmbids/lib/python3*/site-packages/"$pkg"); \
      if [ -d "$dir" ]; then find "$dir" -depth -type d -name tests -exec rm -rf {} +; fi; \
    done

# The package itself (a wheel: hatchling is fetched into pip's temporary build env).
# Its entry script runs Python isolated (-I): Apptainer passes the caller's environment
# into the image, and a host PYTHONPATH or PYTHONHOME must not replace the image's
# packages (qsmbids.cli.environment also drops them for the worker processes).
COPY qsmbids /src/qsmbids
# hadolint ignore=DL3013,DL3042
RUN --mount=type=secret,id=pip_cert \
    set -eu; \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    /opt/qsmbids/bin/python -m pip install --no-deps /src; \
    /opt/qsmbids/bin/python -m pip check; \
    /opt/qsmbids/bin/python -m compileall -q /opt/qsmbids/lib/python3*/site-packages/qsmbids; \
    sed -i '1s|^#!\(/opt/qsmbids/bin/python[0-9.]*\)$|#!\1 -I|' /opt/qsmbids/bin/qsmbids; \
    case "$(head -n 1 /opt/qsmbids/bin/qsmbids)" in *" -I") ;; *) exit 1 ;; esac

# The default atlas: `qsmbids atlas fetch` downloads the originals from pinned
# commits, verifies their SHA-256 and builds the atlas into /opt/qsmbids-atlas/default
# (QSMBIDS_ATLAS_DIR below, where qsmbids looks for it); `qsmbids atlas check`
# validates it. ATLAS_MIRROR (e.g. file:///mirror with `podman build -v DIR:/mirror:ro`)
# fetches the same files from elsewhere, checksums verified all the same.
# FETCH_ATLAS=0 skips it: the image then needs --atlas-dir (or --atlas none).
# chmod: the atlas is written with private (0600) temporary files; the non-root
# user must be able to read it.
ARG FETCH_ATLAS=1
ARG ATLAS_MIRROR=""
RUN --mount=type=secret,id=pip_cert \
    set -eu; \
    mkdir -p /opt/qsmbids-atlas; \
    if [ "${FETCH_ATLAS}" = 1 ]; then \
      if [ -s /run/secrets/pip_cert ]; then export SSL_CERT_FILE=/run/secrets/pip_cert; fi; \
      if [ -n "${ATLAS_MIRROR}" ]; then set -- --mirror "${ATLAS_MIRROR}"; fi; \
      /opt/qsmbids/bin/qsmbids atlas fetch --cache-dir /opt/qsmbids-atlas/cache \
        --atlas-dir /opt/qsmbids-atlas/default "$@"; \
      /opt/qsmbids/bin/qsmbids atlas check /opt/qsmbids-atlas/default; \
    else \
      echo "built with FETCH_ATLAS=${FETCH_ATLAS}: no default atlas in this image" > /opt/qsmbids-atlas/README.txt; \
    fi; \
    chmod -R a+rX /opt/qsmbids-atlas

# ---------------------------------------------------------------------------
# runtime: the base image, the venv and the atlas; runs as a non-root user.
FROM ${BASE_IMAGE}

ARG VERSION=0.1.0
ARG VCS_REF=unknown
ARG BUILD_DATE=unknown
LABEL org.opencontainers.image.title="qsmbids" \
      org.opencontainers.image.description="BIDS App: multi-echo GRE to Quantitative Susceptibility Maps and regional susceptibility tables of the deep grey nuclei" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.source="https://github.com/qsmbids/qsmbids" \
      org.opencontainers.image.url="https://github.com/qsmbids/qsmbids" \
      org.opencontainers.image.documentation="https://github.com/qsmbids/qsmbids#containers" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="qsmbids developers"

# A fixed non-root user; `docker run -u UID:GID` (any uid) works too, because HOME is
# writable by everyone and caches go to /tmp. /qsmbids_work is the default work
# folder when OUTPUT_DIR is mounted at /out (OUTPUT_DIR/../qsmbids_work).
RUN useradd --create-home --home-dir /home/qsmbids --uid 1000 --user-group --shell /bin/sh qsmbids \
    && chmod 0777 /home/qsmbids \
    && mkdir -m 1777 /qsmbids_work

COPY --from=builder /opt/qsmbids /opt/qsmbids
COPY --from=builder /opt/qsmbids-atlas /opt/qsmbids-atlas

# Threads: the BIDS App runs up to --nprocs processes at once and passes
# --omp-nthreads explicitly to its FFTs, numba kernels and ANTs. These defaults cap
# everything not told otherwise (BLAS, or `apptainer exec ... python`), so nothing
# starts one thread per host core on a shared HPC node (oversubscription).
ENV PATH=/opt/qsmbids/bin:${PATH} \
    HOME=/home/qsmbids \
    QSMBIDS_ATLAS_DIR=/opt/qsmbids-atlas/default \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1 \
    NUMBA_CACHE_DIR=/tmp/numba_cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    NIPYPE_NO_ET=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 1000:1000
WORKDIR /tmp
ENTRYPOINT ["qsmbids"]
CMD ["--help"]
