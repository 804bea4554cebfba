#!/bin/bash
GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_sl6"'
GlueHostMainMemoryRAMSize_Min='3000'
GlueCEImplementationName='"CREAM"'
VirtualOrganisation='dteam'
x509UserProxySubject='/DC=org/DC=wnod/CN=Alice Tester'
blah_opt_mpinodes=2
