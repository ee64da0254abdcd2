# Sourced by the benchmark scripts: `need_tools COMMAND:PACKAGE...` installs, from Debian, the packages of the
# commands that are missing (one apt run for all), `need_files PATH:PACKAGE...` those of missing files (a module,
# say); a package that cannot be installed leaves its rows to say so.
need_tools() { need_packages command "$@"; }
need_files() { need_packages file "$@"; }

need_packages() {
  local kind=$1 missing=() pair pkgs
  shift
  for pair in "$@"; do
    if [[ $kind == command ]]; then
      command -v "${pair%%:*}" >/dev/null && continue
    else
      [[ -e ${pair%%:*} ]] && continue
    fi
    missing+=("${pair#*:}")
  done
  ((${#missing[@]})) || return 0
  mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "installing ${pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${pkgs[@]}" >&2 || echo "could not install ${pkgs[*]}: their rows will say so" >&2
}
