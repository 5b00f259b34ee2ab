#!/usr/bin/env bash
# Kernel and limit settings a bare-metal shardgate host needs for many connections, with notes
# on CPU isolation, IRQ affinity and the frequency governor.
#
# DRY RUN BY DEFAULT: prints "current -> proposed" for every setting and changes nothing.
#   scripts/tune-host.sh                 # show
#   sudo scripts/tune-host.sh --apply    # write /etc/sysctl.d + /etc/security/limits.d, set live
#
# Never lowers a value that is already higher (a port range is only ever widened). In a
# container, where some sysctls are read-only, the live values that cannot be set are
# reported and the run still succeeds.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/tune-host.sh [--apply] [options]

  --apply              write the files below and set the live values (default: dry run)
  --sysctl-file FILE   default /etc/sysctl.d/90-shardgate.conf
  --limits-file FILE   default /etc/security/limits.d/90-shardgate.conf
  --user NAME          user the nofile/memlock limits are for (default: shardgate)
  --proc-sys DIR       where the live sysctls are read and written (default: /proc/sys;
                       another directory is for inspecting a copy, or for tests)
  -h, --help           this text
EOF
}

apply=0
proc_sys="/proc/sys"
sysctl_file="/etc/sysctl.d/90-shardgate.conf"
limits_file="/etc/security/limits.d/90-shardgate.conf"
user="shardgate"

need_value() {
  if [ "$#" -lt 2 ] || [ -z "$2" ]; then
    echo "tune-host.sh: $1 needs a value" >&2
    exit 2
  fi
}

while [ "$#" -gt 0 ]; do
  case "$1" in
    --apply) apply=1 ;;
    --proc-sys) need_value "$@"; proc_sys="${2%/}"; shift ;;
    --sysctl-file) need_value "$@"; sysctl_file="$2"; shift ;;
    --limits-file) need_value "$@"; limits_file="$2"; shift ;;
    --user) need_value "$@"; user="$2"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "tune-host.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

if [ "$apply" -eq 1 ] && [ "$(id -u)" -ne 0 ]; then
  echo "tune-host.sh: --apply must be run as root (it writes $sysctl_file, $limits_file" \
    "and live kernel settings). Run without --apply to see the plan." >&2
  exit 1
fi

# Open files per process: the unit's LimitNOFILE and the limits.d entry below.
nofile=1048576

# key | proposed | why
settings=(
  "net.core.somaxconn|65535|accept queue cap; listeners.backlog (4096) is silently cut to it"
  "net.ipv4.tcp_max_syn_backlog|65535|half-open connections queued during bursts"
  "net.core.netdev_max_backlog|65536|packets queued per core when the NIC outpaces the stack"
  "fs.file-max|2097152|open files system-wide (clients + upstream connections)"
  "fs.nr_open|${nofile}|ceiling of a process's nofile limit (LimitNOFILE=${nofile})"
  "net.ipv4.ip_local_port_range|10240 65535|ephemeral ports for upstream connections (starts above 9000/9090/9095)"
  "net.ipv4.tcp_tw_reuse|1|reuse TIME_WAIT ports for new upstream connections"
)

path_of() { echo "${proc_sys}/${1//.//}"; }

read_value() {
  local file
  file="$(path_of "$1")"
  [ -f "$file" ] && [ -r "$file" ] || return 1
  # Multi-value sysctls (the port range) are tab separated: normalise to single spaces.
  tr -s ' \t' '  ' <"$file" | head -n 1 | sed 's/^ *//; s/ *$//'
}

# merged KEY CURRENT PROPOSED: the value to keep, never lower than CURRENT.
merged() {
  local key="$1" current="$2" proposed="$3"
  case "$key" in
    net.ipv4.ip_local_port_range)
      # Widen only: the lower start and the higher end of the two ranges.
      local clow chigh plow phigh
      read -r clow chigh <<<"$current"
      read -r plow phigh <<<"$proposed"
      echo "$((clow < plow ? clow : plow)) $((chigh > phigh ? chigh : phigh))"
      ;;
    net.ipv4.tcp_tw_reuse)
      # 0 = off, 2 = loopback only (the kernel default), 1 = all: 1 is the widest.
      if [ "$current" = "1" ]; then echo 1; else echo "$proposed"; fi
      ;;
    *)
      if [ "$current" -ge "$proposed" ]; then echo "$current"; else echo "$proposed"; fi
      ;;
  esac
}

if [ "$apply" -eq 1 ]; then
  echo "shardgate host tuning (applying)"
else
  echo "shardgate host tuning: DRY RUN (nothing is changed; add --apply as root to write)"
fi
echo
echo "== sysctl (live values from ${proc_sys}; file ${sysctl_file})"
printf '  %-30s %-16s    %-16s %s\n' "setting" "current" "proposed" "action"

sysctl_lines=()
to_set=()
for entry in "${settings[@]}"; do
  IFS='|' read -r key proposed why <<<"$entry"
  if ! current="$(read_value "$key")" || [ -z "$current" ]; then
    printf '  %-30s %-16s    %-16s %s\n' "$key" "-" "$proposed" "not available here: skipped"
    continue
  fi
  final="$(merged "$key" "$current" "$proposed")"
  sysctl_lines+=("# ${why}" "${key} = ${final}")
  if [ "$final" = "$current" ]; then
    action="keep (already ${current})"
  else
    action="raise"
    to_set+=("${key}|${final}")
  fi
  printf '  %-30s %-16s -> %-16s %s\n' "$key" "$current" "$final" "$action"
done

range="$(read_value net.ipv4.ip_local_port_range || true)"
if [ -n "$range" ]; then
  read -r low _ <<<"$(merged net.ipv4.ip_local_port_range "$range" "10240 65535")"
  if [ "$low" -le 9095 ]; then
    echo "  note: the ephemeral port range starts at $low, below shardgate's default ports; reserve"
    echo "        them so an outgoing connection never holds one when shardgate restarts:"
    echo "        net.ipv4.ip_local_reserved_ports = 9000,9090,9095"
  fi
fi

echo
echo "== limits for user '${user}' (file ${limits_file})"
echo "  this shell: nofile soft $(ulimit -Sn) hard $(ulimit -Hn); memlock soft $(ulimit -Sl) hard $(ulimit -Hl) (KiB)"
limits_content="# shardgate: written by scripts/tune-host.sh. Login sessions (pam_limits) only: the systemd
# unit sets its own LimitNOFILE=/LimitMEMLOCK=, services do not read this file.
# memlock: io_uring rings are locked memory on kernels before 5.12.
${user} soft nofile ${nofile}
${user} hard nofile ${nofile}
${user} soft memlock unlimited
${user} hard memlock unlimited"
echo "  proposed (nofile ${nofile} needs fs.nr_open >= ${nofile}, see above):"
while IFS= read -r line; do
  case "$line" in "#"*) ;; *) echo "    $line" ;; esac
done <<<"$limits_content"
echo "  systemd: the unit (scripts/shardgate.service) sets LimitNOFILE=${nofile} and LimitMEMLOCK=infinity."

io_uring_disabled="$(read_value kernel.io_uring_disabled || true)"
case "$io_uring_disabled" in
  "" | 0) ;;
  1) echo "  note: kernel.io_uring_disabled = 1: only members of kernel.io_uring_group (or CAP_SYS_ADMIN)"
     echo "        may create rings; otherwise shardgate's shards fall back to epoll (logged at start)." ;;
  *) echo "  note: kernel.io_uring_disabled = ${io_uring_disabled}: io_uring is off on this host;"
     echo "        shardgate's shards run on epoll (or start it with --driver legacy)." ;;
esac

# --- apply ---------------------------------------------------------------------------------
failed=0
if [ "$apply" -eq 1 ]; then
  echo
  echo "== applying"
  sysctl_content="# shardgate: written by scripts/tune-host.sh (values never lower than what the host had)."
  for line in "${sysctl_lines[@]}"; do
    sysctl_content+=$'\n'"$line"
  done
  for target in "$sysctl_file|$sysctl_content" "$limits_file|$limits_content"; do
    file="${target%%|*}"
    content="${target#*|}"
    if [ -f "$file" ] && [ "$(cat "$file")" = "$content" ]; then
      echo "  $file: up to date"
    elif mkdir -p "$(dirname "$file")" && printf '%s\n' "$content" >"$file.tmp.$$" \
      && chmod 0644 "$file.tmp.$$" && mv -f "$file.tmp.$$" "$file"; then
      echo "  wrote $file"
    else
      rm -f "$file.tmp.$$"
      echo "  FAILED to write $file"
      failed=$((failed + 1))
    fi
  done
  for item in ${to_set[@]+"${to_set[@]}"}; do
    key="${item%%|*}"
    value="${item#*|}"
    file="$(path_of "$key")"
    # Same as sysctl -w. fs.* and some net.* sysctls are read-only in containers.
    if [ -w "$file" ] && { printf '%s\n' "$value" >"$file"; } 2>/dev/null; then
      echo "  set $key = $value"
    else
      echo "  could not set $key live (read-only here, e.g. in a container); $sysctl_file applies at boot on the host"
      failed=$((failed + 1))
    fi
  done
fi

# --- notes -------------------------------------------------------------------------------------
cpus="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?')"
governors="$(cat /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor 2>/dev/null | sort | uniq -c | tr -s ' ' | paste -sd, - || true)"
isolated="$(cat /sys/devices/system/cpu/isolated 2>/dev/null || true)"
nohz="$(cat /sys/devices/system/cpu/nohz_full 2>/dev/null || true)"
if pgrep -x irqbalance >/dev/null 2>&1; then irqbalance="running"; else irqbalance="not running"; fi
cat <<EOF

== CPU notes (not changed by this script)
  cpus online: ${cpus}; isolated: ${isolated:-none}; nohz_full: ${nohz:-none}; irqbalance: ${irqbalance}
  governor: ${governors:-not exposed here (VM or container)}
  - shardgate runs one shard per CPU it is allowed on (sched_getaffinity) and pins each
    shard to one CPU. Keep shards off the CPUs that service NIC interrupts: e.g. with NIC
    queues' IRQs on CPUs 0-1, run shardgate on 2-N (CPUAffinity=2-15 in a systemd drop-in,
    or taskset -c 2-15), and set the IRQs' /proc/irq/N/smp_affinity_list to 0-1.
  - irqbalance moves IRQs around at run time: stop it (systemctl disable --now irqbalance)
    or ban the shard CPUs (IRQBALANCE_BANNED_CPULIST=2-15 in /etc/default/irqbalance).
    See which IRQs belong to the NIC: grep -E 'eth|ens|enp|mlx' /proc/interrupts
  - Isolation (kernel command line, reboot needed): isolcpus=2-15 nohz_full=2-15
    rcu_nocbs=2-15 keeps other tasks, timer ticks and RCU callbacks off the shard CPUs.
    isolcpus also removes them from every process's default affinity, shardgate's too:
    give it exactly those CPUs with CPUAffinity=2-15, or it starts shards on 0-1 only.
  - Frequency: the performance governor avoids ramp-up latency on bursts
    (cpupower frequency-set -g performance); deep C-states add wake-up latency
    (cpupower idle-set -D 10, or the BIOS).
EOF

echo
if [ "$apply" -eq 1 ]; then
  if [ "$failed" -gt 0 ]; then
    echo "Applied with ${failed} item(s) not set here (see above)."
  else
    echo "Applied."
  fi
else
  echo "Dry run only: nothing was changed. Re-run with --apply (as root) to write these settings."
fi
