/** The LRM adapter the site's `lrm.type` names (the one place that picks it). */
import type { SiteConfig } from '../config/types.js';
import type { LrmAdapter } from './adapter.js';
import { SlurmAdapter } from './slurm/adapter.js';
import { TorqueAdapter } from './torque/adapter.js';

export function lrmAdapterFor(cfg: Pick<SiteConfig, 'lrm'>): LrmAdapter {
  if (cfg.lrm.type === 'slurm') return new SlurmAdapter({ partition: cfg.lrm.partition!, binDir: cfg.lrm.binDir });
  return new TorqueAdapter({ binDir: cfg.lrm.binDir });
}
