# Sourced by the benchmark scripts: `need_tools COMMAND:PACKAGE...` installs, from Debian, the packages of the
# commands that are missing (one apt run for all); a package that cannot be installed leaves its rows to say so.
need_tools() {
  local missing=() pair pkgs
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
  done
  ((${#missing[@]})) || return 0
  mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "installing ${pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${pkgs[@]}" >&2 || echo "could not install ${pkgs[*]}: their rows will say so" >&2
}
