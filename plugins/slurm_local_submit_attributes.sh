# wnod submit filter shim for BLAH (Slurm) — a TEMPLATE: `wnod install blah` writes it where BLAH looks,
# with the @…@ paths filled in. Unfilled it fails closed (every job gets the deny marker).
# BLAH sources this file from its temp script, runs that script with its stdout appended to the batch script,
# discards stderr and ignores the exit code (DESIGN A1). The temp script first assigns every requirement blahpd
# unwound from the job's CeRequirements: `Member("42", other.WNOD_PREFIX)` arrives as WNOD_PREFIX[0]='"42"', which
# sets WNOD_PREFIX, and the same works for PATH or any other name. So nothing below reads a variable but $0 (the
# temp script, which the filter parses as data): the paths are literal, node starts by its absolute path with an
# empty environment (bash's `exec -c`), and a failure to run prints the deny marker (fail closed).
( exec -c @NODE@ @FILTER@ --config @CONFIG@ @LOG@-- "$0" ) 2>/dev/null || printf '%s\n' '# wnod-deny: the wnod submit filter could not run on this CE; contact the site'
