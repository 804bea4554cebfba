/** pbs_mom's node health check for wnod (pure parts): the shim's name and mode in mom_priv and the mom config lines.
 * pbs_mom (6.1.3, mom_server.c check_state) runs `$node_check_script` through popen every `$node_check_interval`
 * status updates ($status_update_time, 45 s by default) and marks the node down when the output starts with
 * "ERROR" (case-insensitive), the output becoming the node's message; a later run without it brings the node back.
 * It stats the path and wants it executable: the value is a path, no arguments, hence a shim. */

/** File name in mom_priv; root-run, so 0500 like the prologue. */
export const NODE_CHECK_NAME = 'wnod-node-check';
export const NODE_CHECK_MODE = 0o500;
/** Every status update: `wnod status --for torque` is cheap (no VM boots, no locks). */
export const NODE_CHECK_INTERVAL = 1;

/** A `$node_check_script` already in the mom config that is not ours (Torque runs one), or undefined. Pure. */
export function foreignNodeCheck(existingConfig: string, ours: string): string | undefined {
  for (const line of existingConfig.split('\n')) {
    const [key, value] = line.trim().split(/\s+/);
    if (key === '$node_check_script' && value && value !== ours) return value;
  }
  return undefined;
}

/** The mom config lines for the check; none when the site has its own script (it should call ours). Pure. */
export function nodeCheckLines(shimPath: string, foreign: string | undefined): { lines: string[]; note?: string } {
  if (foreign) {
    return { lines: [], note: `mom_priv/config already runs ${foreign} as $node_check_script (Torque runs one): have it print the output of ${shimPath} when that starts with ERROR` };
  }
  return { lines: [`$node_check_script ${shimPath}`, `$node_check_interval ${NODE_CHECK_INTERVAL}`] };
}
