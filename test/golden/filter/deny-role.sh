#!/bin/bash
GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_el9"'
VirtualOrganisation='atlas'
x509UserProxyFQAN='"userFQAN=/atlas/Role=production/Capability=NULL" "userFQAN=/atlas/Role=NULL/Capability=NULL"'
