# Shared helpers for the project scripts. Sourced, not run.
say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# apt-get install, as root or through sudo, updating the package lists once per run.
apt_install() {
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "need root (or sudo) to install: $*"
    sudo="sudo"
  fi
  # Not LIVECAMP_-prefixed: the server reads every LIVECAMP_ variable as configuration and refuses
  # unknown ones, and the scripts start it from this same shell.
  if [ -z "${APT_LISTS_UPDATED_BY_SCRIPTS:-}" ]; then
    $sudo apt-get update -qq || die "apt-get update failed"
    export APT_LISTS_UPDATED_BY_SCRIPTS=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" \
    || die "apt-get install $* failed"
}

# Installs the Debian packages among "$@" that are not installed yet.
ensure_debs() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    apt_install "${missing[@]}"
  fi
}

# Installs Debian package $2 when command $1 is missing.
ensure_cmd() {
  command -v "$1" >/dev/null || ensure_debs "$2"
}

# What building livecamp needs besides Rust: a C toolchain, and FFmpeg's libraries and headers
# (replay packaging and short-video transcoding, through ffmpeg-next; bindgen needs libclang).
ensure_build_deps() {
  ensure_debs build-essential pkg-config clang libclang-dev libavformat-dev libavcodec-dev libavutil-dev libswscale-dev libswresample-dev libssl-dev
}

require_tools() {
  command -v cargo >/dev/null || die "Rust is required (https://rustup.rs): cargo not found"
  command -v node >/dev/null || die "Node.js (>= 20.19) is required: node not found"
  command -v npm >/dev/null || die "npm is required"
  local major minor
  major=$(node -p 'process.versions.node.split(".")[0]')
  minor=$(node -p 'process.versions.node.split(".")[1]')
  if [ "$major" -lt 20 ] || { [ "$major" -eq 20 ] && [ "$minor" -lt 19 ]; }; then
    die "Node.js >= 20.19 is required (found $(node --version))"
  fi
}

# npm ci in a folder when its lockfile changed since the last install.
npm_ci() {
  local dir=$1
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    say "npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed in $dir"
  fi
}
