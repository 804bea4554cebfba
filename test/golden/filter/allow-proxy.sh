#!/bin/bash
GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_sl6"'
GlueCEImplementationName='"CREAM"'
VirtualOrganisation='atlas'
x509UserProxyFQAN='"userFQAN=/atlas/Role=NULL/Capability=NULL"'
x509userproxy='@PROXY@'
