# shellcheck shell=bash
# Debian package helpers of the hack scripts, sourced by them: they log through the sourcing
# script's log().

# apt_ensure PKG...: installs the Debian packages that are missing.
apt_ensure() {
  local missing=() p
  for p in "$@"; do
    [[ "$(dpkg-query -W -f='${Status}' "${p}" 2>/dev/null)" == "install ok installed" ]] || missing+=("${p}")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing ${missing[*]} from apt"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# busybox_static_version: the version of busybox-static that apt would fetch, after an apt-get
# update if it knows none.
busybox_static_version() {
  local v
  v=$(apt-cache policy busybox-static 2>/dev/null | sed -n 's/^  Candidate: //p')
  if [[ -z ${v} || ${v} == "(none)" ]]; then
    apt-get update -qq >&2
    v=$(apt-cache policy busybox-static 2>/dev/null | sed -n 's/^  Candidate: //p')
  fi
  echo "${v}"
}

# fetch_busybox_static VERSION DIR: downloads busybox-static VERSION into DIR and unpacks it
# (not installed) into DIR/root: the static busybox is DIR/root/bin/busybox.
fetch_busybox_static() {
  mkdir -p "$2"
  (cd "$2" && apt-get download -qq -o APT::Sandbox::User=root "busybox-static=$1" &&
    dpkg-deb -x busybox-static_*.deb root)
}
