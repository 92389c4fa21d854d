# One image for migrate, gateway and worker: small, non-root, built from the hashed lock.
# The base is pinned to a release; bump it (and run scripts/lock) on Python security releases.
FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
RUN python -m venv /opt/qcare
# exactly the locked versions, every file checked against its hash (scripts/lock)
COPY requirements.lock ./
RUN /opt/qcare/bin/pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY qcare_ingest ./qcare_ingest
COPY gateway ./gateway
COPY worker ./worker
# the project itself: nothing resolved, nothing downloaded (hatchling comes from the lock)
RUN /opt/qcare/bin/pip install --no-cache-dir --no-deps --no-build-isolation . \
    && /opt/qcare/bin/pip uninstall -y hatchling pathspec pluggy trove-classifiers

FROM python:3.11.14-slim-bookworm
RUN useradd --system --uid 10001 --no-create-home qcare
COPY --from=build /opt/qcare /opt/qcare
USER qcare
ENV PATH=/opt/qcare/bin:$PATH QCARE_HTTP_HOST=0.0.0.0 PYTHONUNBUFFERED=1
EXPOSE 8080
ENTRYPOINT ["qcare-ingest"]
CMD ["gateway"]
