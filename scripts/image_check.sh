#!/usr/bin/env bash
# Builds the Dockerfile for real and runs the image on the reference data, on a machine with no
# registry of base images and no container runtime (`make image-check`; needs root).
#
# 1. Stand-ins for python:3.11-bookworm and python:3.11-slim-bookworm are made from Debian
#    bookworm's own packages (debootstrap; Python 3.11 from Debian, with the machine's CA bundle
#    inside, since pip's TLS passes through it) and tagged with the names the Dockerfile uses,
#    so the Dockerfile stays the standard one. They are cached in $L3TOL1_IMAGE_CACHE
#    (/var/cache/l3tol1-image) and in podman's storage: a second run reuses them.
# 2. `podman build --isolation chroot` builds the Dockerfile (chroot isolation: no runtime), with
#    podman's layer cache; the l3tol1 the image holds must be the build stage's new wheel (podman
#    4.3 can reuse an install step over changed wheels: then it builds again without the cache).
# 3. The built image's file system is mounted (`podman image mount`) and its entrypoint run under
#    `chroot --userspec` as the image's user, with the image's environment and working directory,
#    in private mount and network namespaces, the root read-only and /tmp a tmpfs (as
#    docker-compose.yml runs it), the input directory read-only: its output must be
#    byte-identical to data/expected_l1_data_v3.1.csv.
#
# Exit 0 and a last line "IMAGE CHECK: MATCH ..." when all holds; any failure exits non-zero.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${L3TOL1_IMAGE_CACHE:-/var/cache/l3tol1-image}
mirror=${L3TOL1_DEBIAN_MIRROR:-http://deb.debian.org/debian}
image=${L3TOL1_IMAGE_TAG:-localhost/l3tol1:image-check}
suite=bookworm
ca_bundle=/etc/ssl/certs/ca-certificates.crt
input="$repo/data/l3_data_v3.1.csv"
expected="$repo/data/expected_l1_data_v3.1.csv"
# What the stand-ins hold; a change here, in standin_recipe (bump it when standin() changes) or
# in the machine's CA bundle makes new ones.
standin_recipe=2
slim_packages=python3,python3-pip,python-is-python3,python3-venv,ca-certificates,netbase,tzdata
full_packages=$slim_packages,gcc,libc6-dev,python3-dev,make,git

die() { echo "image-check: $*" >&2; exit 1; }
step() { echo "== $* ($(date -u +%H:%M:%S))" >&2; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, podman's storage, chroot): sudo make image-check"
[ -f "$ca_bundle" ] || die "no CA bundle at $ca_bundle"
missing=()
command -v podman >/dev/null || missing+=(podman)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    step "installing ${missing[*]}"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
mkdir -p "$cache/debs"
rm -rf "$cache"/root.* # what an interrupted debootstrap left (one check at a time)
started=$SECONDS

# standin TAG PACKAGES: docker.io/library/python:TAG, a Debian root file system holding PACKAGES,
# with the environment of the real python image (PATH with /usr/local/bin first, LANG).
standin() {
    local tag=$1 packages=$2 ref="docker.io/library/python:$1" key root tar
    key=$(printf '%s\n' "$standin_recipe" "$suite" "$packages" "$mirror" | cat - "$ca_bundle" \
        | sha256sum | cut -c1-16)
    if podman image exists "$ref" \
        && [ "$(podman image inspect --format '{{index .Labels "org.l3tol1.standin"}}' "$ref")" = "$key" ]; then
        step "stand-in $ref: cached in podman's storage"
        return
    fi
    tar="$cache/python-$tag-$key.tar"
    if [ ! -f "$tar" ]; then
        step "stand-in $ref: debootstrap $suite with $packages"
        rm -f "$cache/python-$tag-"*.tar  # of an older recipe
        root=$(mktemp -d "$cache/root.XXXXXX")
        [ -d "$root" ] && [ "$root" != / ] || die "no root directory"
        debootstrap --variant=minbase --cache-dir="$cache/debs" --include="$packages" \
            "$suite" "$root" "$mirror" >"$root.log" 2>&1 \
            || { tail -20 "$root.log" >&2; die "debootstrap failed (log: $root.log)"; }
        rm -f "$root.log"
        # pip's TLS passes through this machine's CA (not in Debian's bundle); Debian's pip and
        # Python read /etc/ssl/certs/ca-certificates.crt.
        cp "$ca_bundle" "$root/etc/ssl/certs/ca-certificates.crt"
        # The real image's pip installs into its own Python; Debian marks its Python as managed
        # by apt (PEP 668), which would refuse the Dockerfile's `pip install`.
        rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
        # As debian:bookworm-slim (under the real slim image) has it: no documentation, manual
        # pages or translations, now or from a later apt-get install (copyrights are kept).
        printf 'path-exclude /usr/share/%s/*\n' doc man groff info locale lintian linda \
            >"$root/etc/dpkg/dpkg.cfg.d/docker"
        echo 'path-include /usr/share/doc/*/copyright' >>"$root/etc/dpkg/dpkg.cfg.d/docker"
        find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
        find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
        for dir in man groff info locale lintian linda; do
            rm -rf "${root:?}/usr/share/$dir"
        done
        chroot "$root" apt-get clean
        rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/debconf/*-old "$root"/var/log/*.log
        tar --numeric-owner --xattrs -C "$root" \
            --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* --exclude=./run/* \
            -cf "$tar.part" .
        mv "$tar.part" "$tar"
        rm -rf "$root"
    fi
    step "stand-in $ref: importing $tar"
    podman import --quiet \
        --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        --change "LABEL org.l3tol1.standin=$key" \
        --change "LABEL org.opencontainers.image.description=stand-in for python:$tag made by scripts/image_check.sh from Debian $suite packages" \
        "$tar" "$ref" >/dev/null
}

standin 3.11-slim-bookworm "$slim_packages"
standin 3.11-bookworm "$full_packages"

# --pull=never: the FROM lines name the stand-ins, never a registry.
# --format docker: the image keeps its HEALTHCHECK, as docker build's does (OCI has none).
build() {
    podman build --isolation chroot --pull=never --format docker -f "$repo/Dockerfile" "$@" "$repo" >&2
}
# The package files (path, hash) of l3tol1 in the build stage's wheel and in the built image.
wheel_record() {
    local mnt status=0
    mnt=$(podman image mount "$1")
    python3 -c 'import sys, zipfile; w = zipfile.ZipFile(sys.argv[1])
r = next(n for n in w.namelist() if n.endswith(".dist-info/RECORD"))
print("\n".join(sorted(l for l in w.read(r).decode().splitlines() if l.startswith("l3tol1/"))))' \
        "$mnt"/wheels/l3tol1-*.whl || status=$?
    podman image unmount "$1" >/dev/null
    return $status
}
image_record() {
    local mnt status=0
    mnt=$(podman image mount "$1")
    grep -h '^l3tol1/.*,sha256=' "$mnt"/usr/local/lib/python3*/*-packages/l3tol1-*.dist-info/RECORD \
        | tr -d "\r" | LC_ALL=C sort || status=$?
    podman image unmount "$1" >/dev/null
    return $status
}

step "podman build --isolation chroot -t $image"
build_started=$SECONDS
build --layers --target build -t "$image-build"
build --layers -t "$image"
# Podman 4.3 reuses a cached RUN --mount=type=bind,from=build step whatever the wheels it mounts
# now hold (BuildKit does not): when the image's l3tol1 is not the new wheel's, build it afresh.
if [ "$(wheel_record "$image-build")" != "$(image_record "$image")" ]; then
    step "the cached install step holds an older l3tol1: building again without the cache"
    build --no-cache -t "$image"
    [ "$(wheel_record "$image-build")" = "$(image_record "$image")" ] \
        || die "the image's l3tol1 is not the build stage's wheel"
fi
build_seconds=$((SECONDS - build_started))

# What a runtime would take from the image: its user, environment, entrypoint, working dir.
user=$(podman image inspect --format '{{.Config.User}}' "$image")
workdir=$(podman image inspect --format '{{.Config.WorkingDir}}' "$image")
image_list() {  # one line per element of the image's .Config list $1
    podman image inspect --format "{{range .Config.$1}}{{println .}}{{end}}" "$image" | sed '/^$/d'
}
mapfile -t image_env < <(image_list Env)
mapfile -t entrypoint < <(image_list Entrypoint)
uid=${user%%:*}
[[ $uid =~ ^[0-9]+$ ]] || die "the image's USER is not numeric ($user)"
[ "$uid" != 0 ] || die "the image runs as root ($user)"
[ ${#entrypoint[@]} -gt 0 ] || die "the image has no entrypoint"
env_value() { printf '%s\n' "${image_env[@]}" | sed -n "s/^$1=//p" | tail -1; }
in_file=$(env_value L3TOL1_INPUT_FILE)
out_file=$(env_value L3TOL1_OUTPUT_FILE)
state_file=$(env_value L3TOL1_CHECKPOINT)
[ -n "$in_file" ] && [ -n "$out_file" ] && [ -n "$state_file" ] \
    || die "the image sets no L3TOL1_INPUT_FILE / L3TOL1_OUTPUT_FILE / L3TOL1_CHECKPOINT"

work=$(mktemp -d /tmp/l3tol1-image-check.XXXXXX)
mnt=
cleanup() {
    [ -n "$mnt" ] && podman image unmount "$image" >/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/in" "$work/out" "$work/state"
cp "$input" "$work/in/$(basename "$in_file")"
chown "$user" "$work/out" "$work/state"
mnt=$(podman image mount "$image")

# A runtime sets HOME from the image's passwd entry of the user.
home=$(awk -F: -v uid="$uid" '$3 == uid {print $6}' "$mnt/etc/passwd")
step "running ${entrypoint[*]} --no-follow in the image as $user (input $in_file)"
run_started=$SECONDS
status=0
# The mounts live in a private namespace, gone when the run ends; the network namespace is new
# too (the image's metrics port binds there, as in a container). --no-follow is the only
# argument, as after `docker run IMAGE`: the image's default follows its input forever.
unshare --mount --net --propagation private -- /bin/sh -eu -c '
    mnt=$1 work=$2 in_dir=$3 out_dir=$4 state_dir=$5; shift 5
    mount --rbind /dev "$mnt/dev"
    mount --rbind /proc "$mnt/proc"
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$mnt/tmp"
    mount --bind -o ro "$work/in" "$mnt$in_dir"
    mount -o remount,bind,ro "$mnt$in_dir"
    mount --bind "$work/out" "$mnt$out_dir"
    mount --bind "$work/state" "$mnt$state_dir"
    exec "$@"
' image-check "$mnt" "$work" "$(dirname "$in_file")" "$(dirname "$out_file")" "$(dirname "$state_file")" \
    env -i "${image_env[@]}" HOME="${home:-/}" \
    chroot --userspec="$user" "$mnt" \
    env --chdir="${workdir:-/}" "${entrypoint[@]}" --no-follow \
    || status=$?
run_seconds=$((SECONDS - run_started))
[ "$status" = 0 ] || die "the image's entrypoint exited $status"

out="$work/out/$(basename "$out_file")"
[ -f "$out" ] || die "no output at $out_file"
owner=$(stat -c %u "$out")
[ "$owner" = "$uid" ] || die "$out_file is owned by uid $owner, not the image's user $user"
cmp "$out" "$expected" >&2 || die "MISMATCH: $out_file differs from ${expected#"$repo"/}"

step "sizes (podman image ls)"
podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' --filter reference="$image" \
    --filter reference=docker.io/library/python:3.11-slim-bookworm \
    --filter reference=docker.io/library/python:3.11-bookworm >&2
echo "layers of $image (podman history):" >&2
podman history --format '{{.Size}}\t{{.CreatedBy}}' "$image" | cut -c1-150 >&2
echo "IMAGE CHECK: MATCH: $image, run as uid $uid, wrote ${out_file} byte-identical to" \
    "${expected#"$repo"/} (build ${build_seconds}s, run ${run_seconds}s, all $((SECONDS - started))s)"
