import t from 'tap';
import { findCes, hostOf, ruleToVo, type Entry, type Glue1Entries, type Glue2Entries } from '../src/glue/discover.js';

const e = (dn: string, attrs: Record<string, string | string[]>): Entry =>
  ({ dn, attrs: Object.fromEntries(Object.entries(attrs).map(([k, v]) => [k.toLowerCase(), Array.isArray(v) ? v : [v]])) });
const RTE = 'GlueHostApplicationSoftwareRunTimeEnvironment';
const noGlue2: Glue2Entries = { services: [], managers: [], endpoints: [], accessPolicies: [], applicationEnvironments: [], executionEnvironments: [] };

function glue1(subs: Entry[], rules = ['VO:dteam', 'VOMS:/atlas/Role=production']): Glue1Entries {
  return {
    ces: [e('GlueCEUniqueID=ce1:8443/cream-pbs-q,mds-vo-name=resource,o=grid', {
      GlueCEUniqueID: 'ce1:8443/cream-pbs-q', GlueForeignKey: 'GlueClusterUniqueID=cl1', GlueCEAccessControlBaseRule: rules, GlueCEInfoHostName: 'ce1' })],
    clusters: [e('GlueClusterUniqueID=cl1,mds-vo-name=resource,o=grid', { GlueClusterUniqueID: 'cl1' })],
    subClusters: subs,
  };
}
const sc = (id: string, tags: string[]) => e(`GlueSubClusterUniqueID=${id},GlueClusterUniqueID=cl1,mds-vo-name=resource,o=grid`,
  { GlueSubClusterUniqueID: id, GlueChunkKey: 'GlueClusterUniqueID=cl1', [RTE]: tags });

t.test('GLUE 1.3: only the FIRST subcluster of the cluster counts, as in the WMS', async (t) => {
  const g = glue1([sc('a', ['vm_sl6', 'GLITE-3_2_0', 'VO-dteam-vm_sl6']), sc('b', ['vm_el9'])]);
  t.same(findCes(g, noGlue2, { image: 'vm_el9' }), [], 'vm_el9 sits on the second subcluster only');
  const r = findCes(g, noGlue2, { image: 'VM_SL6' });
  t.same(r, [{ ce: 'ce1:8443/cream-pbs-q', host: 'ce1', images: ['vm_sl6'], vos: ['dteam', 'atlas'], source: 'glue1', glue2Service: null, endpoints: [] }],
    'case-insensitive match, the published spelling is reported');
  t.same(findCes(g, noGlue2, {})[0]!.images, ['vm_sl6', 'GLITE-3_2_0'], 'without --image: all tags but VO-* ones');
  t.same(findCes(g, noGlue2, { vo: 'cms' }), [], 'a VO without access rule is filtered out');
  t.equal(findCes(g, noGlue2, { vo: 'atlas', image: 'vm_sl6' }).length, 1, 'VOMS:/atlas/... grants atlas');
});

t.test('GLUE 1.3: a CE whose cluster entry is missing offers nothing', async (t) => {
  const g = glue1([sc('a', ['vm_sl6'])]);
  g.clusters = [];
  t.same(findCes(g, noGlue2, { image: 'vm_sl6' }), []);
});

const g2: Glue2Entries = {
  services: [e('GLUE2ServiceID=s1,o=glue', { GLUE2ServiceID: 's1' })],
  managers: [e('GLUE2ManagerID=m1,o=glue', { GLUE2ManagerID: 'm1', GLUE2ManagerServiceForeignKey: 's1' })],
  endpoints: [e('GLUE2EndpointID=ep1,o=glue', { GLUE2EndpointID: 'ep1', GLUE2EndpointURL: 'https://ce1:8443/ce-cream/services', GLUE2EndpointServiceForeignKey: 's1' })],
  accessPolicies: [e('GLUE2PolicyID=p1,o=glue', { GLUE2PolicyRule: ['VO:dteam', 'VO:ops'], GLUE2AccessPolicyEndpointForeignKey: 'ep1' })],
  applicationEnvironments: [
    e('GLUE2ApplicationEnvironmentID=a1,o=glue', { GLUE2EntityName: 'vm_sl6', GLUE2ApplicationEnvironmentAppName: 'vm_sl6',
      GLUE2ApplicationEnvironmentComputingManagerForeignKey: 'm1', GLUE2ApplicationEnvironmentExecutionEnvironmentForeignKey: 'ee1' }),
    e('GLUE2ApplicationEnvironmentID=a2,o=glue', { GLUE2ApplicationEnvironmentAppName: 'athena', GLUE2ApplicationEnvironmentAppVersion: '17.2',
      GLUE2ApplicationEnvironmentComputingManagerForeignKey: 'm1' }),
  ],
  executionEnvironments: [e('GLUE2ResourceID=ee1,o=glue', { GLUE2ResourceID: 'ee1', GLUE2ExecutionEnvironmentVirtualMachine: 'true' })],
};

t.test('GLUE 2.0 joins through manager and service; merged with GLUE 1.3 by host', async (t) => {
  const only2 = findCes({ ces: [], clusters: [], subClusters: [] }, g2, {});
  t.same(only2, [{ ce: 's1', host: 'ce1', images: ['vm_sl6'], vos: ['dteam', 'ops'], source: 'glue2', glue2Service: 's1',
    endpoints: ['https://ce1:8443/ce-cream/services'] }], 'only VM environments count as images');
  t.same(findCes({ ces: [], clusters: [], subClusters: [] }, g2, { image: 'athena-17.2' })[0]!.images, ['athena-17.2']);
  const both = findCes(glue1([sc('a', ['vm_sl6', 'GLITE-3_2_0'])]), g2, { image: 'vm_sl6' });
  t.equal(both.length, 1);
  t.equal(both[0]!.source, 'both');
  t.equal(both[0]!.ce, 'ce1:8443/cream-pbs-q');
  t.same(both[0]!.vos, ['dteam', 'atlas', 'ops']);
  t.same(findCes(glue1([sc('a', ['GLITE-3_2_0'])]), g2, {})[0]!.images, ['vm_sl6'], 'GLUE2 tells which tags are images');
});

t.test('helpers', async (t) => {
  t.equal(ruleToVo('VO:dteam'), 'dteam');
  t.equal(ruleToVo('VOMS:/atlas/Role=production'), 'atlas');
  t.equal(ruleToVo('DENY:/x'), undefined);
  t.equal(hostOf('https://CE1.example.org:8443/x'), 'ce1.example.org');
  t.equal(hostOf('ce1:8443/cream-pbs-q'), 'ce1');
});
