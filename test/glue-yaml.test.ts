import t from 'tap';
import { parseConfig } from '../src/config/parse.js';
import { siteYaml } from './glue-fixtures.js';

t.test('the generated site YAML is a valid config', async (t) => {
  const c = parseConfig(siteYaml({ host: 'ce.test.org', n: 3, lastGood: '/tmp/x/lg.ldif', perVoTags: true, vos: ['dteam', 'atlas'] }), 'x.yaml');
  t.same(c.images.map((i) => i.id), ['vm_img0', 'vm_img1', 'vm_img2']);
  t.equal(c.glue.lastGoodFile, '/tmp/x/lg.ldif');
  t.equal(c.glue.perVoTags, true);
  t.same(c.policy.rules.map((r) => r.vo), ['dteam', 'atlas']);
});
