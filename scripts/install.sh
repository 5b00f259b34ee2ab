#!/usr/bin/env bash
# Installs shardgate on a systemd host: the binary, the example configuration (never
# overwriting one that exists), the systemd unit and the `shardgate` system user.
#
# DRY RUN BY DEFAULT: without --apply it only prints what it would do and changes nothing.
#
#   scripts/install.sh                      # show the plan (builds nothing, writes nothing)
#   sudo scripts/install.sh --apply         # build if needed, then install
#   cargo build --release && sudo scripts/install.sh --apply --no-build
#
# Idempotent: files already identical are left alone; a configuration file that exists and
# differs is kept, and the example is written beside it as FILE.example.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/install.sh [--apply] [options]

  --apply             act (default: dry run, print every action and change nothing)
  --no-build          do not run `cargo build --release --locked`; use the existing binary
  --binary FILE       binary to install (default: <repo>/target/release/shardgate,
                      or $CARGO_TARGET_DIR/release/shardgate)
  --prefix DIR        install the binary to DIR/bin, docs to DIR/share/doc/shardgate
                      (default: /usr/local)
  --config-dir DIR    configuration directory (default: /etc/shardgate)
  --unit-dir DIR      where the systemd unit goes (default: /etc/systemd/system)
  --user NAME         service user and group, created as a system user if missing
                      (default: shardgate)
  -h, --help          this text

After --apply:  systemctl enable --now shardgate
EOF
}

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
apply=0
build=1
binary=""
prefix="/usr/local"
config_dir="/etc/shardgate"
unit_dir="/etc/systemd/system"
user="shardgate"

need_value() {
  if [ "$#" -lt 2 ] || [ -z "$2" ]; then
    echo "install.sh: $1 needs a value" >&2
    exit 2
  fi
}

while [ "$#" -gt 0 ]; do
  case "$1" in
    --apply) apply=1 ;;
    --no-build) build=0 ;;
    --binary) need_value "$@"; binary="$2"; shift ;;
    --prefix) need_value "$@"; prefix="$2"; shift ;;
    --config-dir) need_value "$@"; config_dir="$2"; shift ;;
    --unit-dir) need_value "$@"; unit_dir="$2"; shift ;;
    --user) need_value "$@"; user="$2"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

for dir in "$prefix" "$config_dir" "$unit_dir"; do
  case "$dir" in
    /*) ;;
    *) echo "install.sh: '$dir' must be an absolute path (it is written into the unit)" >&2; exit 2 ;;
  esac
done
# Trailing slashes would make the path rewrites in the unit inconsistent.
prefix="${prefix%/}"
config_dir="${config_dir%/}"
unit_dir="${unit_dir%/}"

if [ "$apply" -eq 1 ] && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: --apply must be run as root (it writes ${prefix}/bin, ${config_dir}," \
    "${unit_dir} and creates the '${user}' user)." >&2
  echo "Build as yourself first, then: sudo scripts/install.sh --apply --no-build" >&2
  exit 1
fi

if [ -z "$binary" ]; then
  binary="${CARGO_TARGET_DIR:-$repo/target}/release/shardgate"
fi
bin_dest="${prefix}/bin/shardgate"
doc_dest="${prefix}/share/doc/shardgate"
unit_dest="${unit_dir}/shardgate.service"

if [ "$apply" -eq 1 ]; then
  echo "shardgate install (applying)"
else
  echo "shardgate install: DRY RUN (nothing is changed; add --apply to act)"
fi
echo "  binary:     ${binary} -> ${bin_dest}"
echo "  config:     ${config_dir}"
echo "  unit:       ${unit_dest}"
echo "  user/group: ${user}"

# One line per action; the command runs only with --apply.
run() {
  if [ "$apply" -eq 1 ]; then
    echo "+ $(quoted "$@")"
    "$@"
  else
    echo "would run: $(quoted "$@")"
  fi
}
quoted() {
  local out
  printf -v out '%q ' "$@"
  echo "${out% }"
}
note() { echo "  $*"; }

# --- build -----------------------------------------------------------------------------------
if [ "$build" -eq 1 ]; then
  if [ "$apply" -eq 1 ] && ! command -v cargo >/dev/null 2>&1; then
    echo "install.sh: cargo is not on PATH (common under sudo). Build first as yourself:" >&2
    echo "  cargo build --release --locked && sudo scripts/install.sh --apply --no-build" >&2
    exit 1
  fi
  run cargo build --release --locked --manifest-path "$repo/Cargo.toml"
elif [ ! -x "$binary" ]; then
  if [ "$apply" -eq 1 ]; then
    echo "install.sh: $binary does not exist; build it or drop --no-build" >&2
    exit 1
  fi
  note "(note: $binary is not built yet)"
fi

# --- user --------------------------------------------------------------------------------------
if getent passwd "$user" >/dev/null 2>&1; then
  note "user '$user' exists: unchanged"
else
  nologin="$(command -v nologin || echo /usr/sbin/nologin)"
  run useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell "$nologin" --comment "shardgate API gateway" "$user"
fi
# The unit and the configuration files use the user's primary group (useradd --user-group
# makes it a group of the same name).
if getent passwd "$user" >/dev/null 2>&1; then
  group="$(id -gn "$user")"
else
  group="$user"
fi

# --- files -------------------------------------------------------------------------------------
# install_file MODE OWNER:GROUP SRC DEST: installs unless DEST is already identical.
install_file() {
  local mode="$1" owner="$2" src="$3" dest="$4"
  if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
    note "$dest: up to date"
  else
    run install -D -m "$mode" -o "${owner%%:*}" -g "${owner##*:}" "$src" "$dest"
  fi
}

# install_config SRC DEST: a configuration file is never overwritten. When DEST exists and
# differs, the shipped version goes to DEST.example for comparison.
install_config() {
  local src="$1" dest="$2"
  if [ ! -e "$dest" ]; then
    run install -D -m 0640 -o root -g "$group" "$src" "$dest"
  elif cmp -s "$src" "$dest"; then
    note "$dest: up to date"
  else
    note "$dest: exists and differs: kept; the example goes to $dest.example"
    install_file 0640 "root:$group" "$src" "$dest.example"
  fi
}

# Binary
if [ -x "$binary" ]; then
  install_file 0755 root:root "$binary" "$bin_dest"
else
  run install -D -m 0755 -o root -g root "$binary" "$bin_dest"
fi

# Configuration: root-owned, readable by the service group, never writable by the service.
# The dev-only JWT certificate goes along because the example gateway.yaml trusts it; its
# private key never does (anyone can sign with it: it is public).
if [ -d "$config_dir" ]; then
  note "$config_dir exists"
else
  run install -d -m 0750 -o root -g "$group" "$config_dir"
fi
for dir in apis dev-only; do
  [ -d "$config_dir/$dir" ] || run install -d -m 0750 -o root -g "$group" "$config_dir/$dir"
done
install_config "$repo/config/gateway.yaml" "$config_dir/gateway.yaml"
for api in "$repo"/config/apis/*; do
  [ -f "$api" ] || continue
  install_config "$api" "$config_dir/apis/$(basename "$api")"
done
install_config "$repo/config/dev-only/jwt-dev-only.cert.pem" \
  "$config_dir/dev-only/jwt-dev-only.cert.pem"
install_config "$repo/config/dev-only/README.md" "$config_dir/dev-only/README.md"

# Documentation (the unit's Documentation= points here for the default prefix).
install_file 0644 root:root "$repo/docs/deployment.md" "$doc_dest/deployment.md"
install_file 0644 root:root "$repo/config/README.md" "$doc_dest/configuration.md"

# systemd unit, with the paths and user of this installation.
render_unit() {
  sed -e "s#/usr/local/bin/shardgate#${bin_dest}#g" \
    -e "s#/usr/local/share/doc/shardgate#${doc_dest}#g" \
    -e "s#/etc/shardgate#${config_dir}#g" \
    -e "s#^User=shardgate\$#User=${user}#" \
    -e "s#^Group=shardgate\$#Group=${group}#" \
    "$repo/scripts/shardgate.service"
}
unit_changed=0
if [ -f "$unit_dest" ] && cmp -s <(render_unit) "$unit_dest"; then
  note "$unit_dest: up to date"
else
  unit_changed=1
  if [ "$apply" -eq 1 ]; then
    unit_tmp="$(mktemp)"
    trap 'rm -f "$unit_tmp"' EXIT
    render_unit >"$unit_tmp"
    run install -D -m 0644 -o root -g root "$unit_tmp" "$unit_dest"
  else
    echo "would run: install -D -m 0644 -o root -g root <scripts/shardgate.service with these paths> $unit_dest"
  fi
fi
# Only the real unit directory of a running systemd needs a daemon-reload.
if [ "$unit_changed" -eq 1 ] && [ "$unit_dir" = "/etc/systemd/system" ]; then
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    run systemctl daemon-reload
  else
    note "(systemd is not running here: no daemon-reload)"
  fi
fi

# --- next steps --------------------------------------------------------------------------------
echo
if [ "$apply" -eq 1 ]; then
  echo "Installed. Next:"
else
  echo "Dry run only: nothing was changed. Re-run with --apply (as root) to install. Then:"
fi
echo "  ${bin_dest} check --config ${config_dir}/gateway.yaml"
echo "  systemctl enable --now shardgate      # start now and at boot"
echo "  systemctl reload shardgate            # after editing the configuration (SIGHUP)"
echo "  journalctl -u shardgate -f            # logs"
echo "  scripts/tune-host.sh                  # kernel limits for many connections"
echo "WARNING: ${config_dir}/gateway.yaml trusts the DEV-ONLY JWT issuer whose private key is"
echo "public. Replace jwt.issuers with your identity provider before exposing the gateway."
