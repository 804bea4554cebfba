// BDII GLUE 1.3 plugin entry: `node dist/glue/plugin.js --config FILE [--last-good FILE] [--budget-ms N]`.
import { mainInfoProvider } from './info-provider.js';

mainInfoProvider('plugin');
