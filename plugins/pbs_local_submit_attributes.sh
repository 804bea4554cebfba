# wnod submit filter shim for BLAH (pbs). BLAH sources this file from its temp script, runs that script with
# its stdout appended to the batch script, discards stderr and ignores the exit code (see DESIGN A1).
# Install: copy to ${blah_libexec_directory}/pbs_local_submit_attributes.sh (prelz/CREAM), or ~/.blah/ or
# /etc/blahp/ (HTCondor-CE blahp). The temp script must run under bash (/bin/sh is dash on Debian: see README).
# $0 is BLAH's temp script: it holds every assignment BLAH unwound from the job. Nothing is evaluated here.
WNOD_PREFIX=${WNOD_PREFIX:-/opt/wnod}
WNOD_CONFIG=${WNOD_CONFIG:-/etc/wnod/wnod.yaml}
if ! command -v node >/dev/null 2>&1 || ! node "$WNOD_PREFIX/dist/hot/filter.cjs" --config "$WNOD_CONFIG" "$0" 2>/dev/null; then
  # fail closed: no decision means no VM
  echo "# wnod-deny: the wnod submit filter could not run on this CE; contact the site"
fi
