# Sourced first by the benchmarks' shell scripts (`. "$(dirname "$0")/no_args.sh"`), which
# take no arguments (their settings are environment variables): with any argument, print
# the calling script's header comment and exit, 0 for -h or --help, else 2.
if [ $# -gt 0 ]; then
  sed -n '2,/^[^#]/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'
  [ "$1" = -h ] || [ "$1" = --help ] || { echo "$0: no arguments expected, got: $*" >&2; exit 2; }
  exit 0
fi
