// GLUE 2.0 printer: the BDII provider output (complete ExecutionEnvironment and ApplicationEnvironment entries).
import { entryRecord, type LdifAttr } from './ldif.js';
import type { GlueModel } from './model.js';

/** The provider's LDIF: per image one GLUE2ExecutionEnvironment, then one GLUE2ApplicationEnvironment linked
 * to it and to the ComputingManager by foreign key. */
export function printGlue2Provider(m: GlueModel): string {
  const { glue2: g, creationTime, validityS } = m;
  const entity: LdifAttr[] = [['GLUE2EntityCreationTime', creationTime], ['GLUE2EntityValidity', String(validityS)]];
  const out: string[] = [];
  for (const ee of g.executionEnvironments) {
    out.push(entryRecord({
      dn: ee.dn,
      attrs: [
        ['objectClass', 'GLUE2Entity'],
        ['objectClass', 'GLUE2Resource'],
        ['objectClass', 'GLUE2ExecutionEnvironment'],
        ['GLUE2ResourceID', ee.id],
        ['GLUE2EntityName', ee.name],
        ...entity,
        ['GLUE2ResourceManagerForeignKey', g.managerId],
        ['GLUE2ExecutionEnvironmentComputingManagerForeignKey', g.managerId],
        ['GLUE2ExecutionEnvironmentPlatform', ee.platform],
        ['GLUE2ExecutionEnvironmentMainMemorySize', String(ee.mainMemoryMB)],
        ['GLUE2ExecutionEnvironmentVirtualMemorySize', String(ee.virtualMemoryMB)],
        ['GLUE2ExecutionEnvironmentOSFamily', ee.osFamily],
        ['GLUE2ExecutionEnvironmentOSName', ee.osName],
        ['GLUE2ExecutionEnvironmentOSVersion', ee.osVersion],
        ['GLUE2ExecutionEnvironmentVirtualMachine', 'true'],
        ['GLUE2ExecutionEnvironmentLogicalCPUs', String(ee.logicalCpus)],
        ['GLUE2ExecutionEnvironmentConnectivityIn', String(ee.connectivityIn)],
        ['GLUE2ExecutionEnvironmentConnectivityOut', String(ee.connectivityOut)],
        ['GLUE2ExecutionEnvironmentCPUTimeScalingFactor', String(ee.cpuTimeScalingFactor)],
        ['GLUE2ExecutionEnvironmentWallTimeScalingFactor', String(ee.wallTimeScalingFactor)],
      ],
    }));
  }
  for (const ae of g.applicationEnvironments) {
    const attrs: LdifAttr[] = [
      ['objectClass', 'GLUE2Entity'],
      ['objectClass', 'GLUE2ApplicationEnvironment'],
      ['GLUE2ApplicationEnvironmentID', ae.id],
      ['GLUE2EntityName', ae.imageId],
      ...entity,
      ['GLUE2ApplicationEnvironmentAppName', ae.appName],
    ];
    if (ae.appVersion !== undefined) attrs.push(['GLUE2ApplicationEnvironmentAppVersion', ae.appVersion]);
    attrs.push(
      // The provider cannot see the image store; the worker node verifies the digest when it stages the image.
      ['GLUE2ApplicationEnvironmentState', 'installednotverified'],
      ['GLUE2ApplicationEnvironmentDescription', ae.description],
      ['GLUE2ApplicationEnvironmentComputingManagerForeignKey', g.managerId],
      ['GLUE2ApplicationEnvironmentExecutionEnvironmentForeignKey', ae.executionEnvironmentId],
    );
    out.push(entryRecord({ dn: ae.dn, attrs }));
  }
  return out.join('');
}
