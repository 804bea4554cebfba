// BDII GLUE 2.0 provider entry: `node dist/glue/provider.js --config FILE [--last-good FILE] [--budget-ms N]`.
import { mainInfoProvider } from './info-provider.js';

mainInfoProvider('provider');
