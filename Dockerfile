# One image for migrate, gateway and worker: small, non-root.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY qcare_ingest ./qcare_ingest
COPY gateway ./gateway
COPY worker ./worker
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home qcare
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/* && rm -rf /wheels
USER qcare
ENV QCARE_HTTP_HOST=0.0.0.0 PYTHONUNBUFFERED=1
EXPOSE 8080
ENTRYPOINT ["qcare-ingest"]
CMD ["gateway"]
