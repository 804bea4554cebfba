#!/bin/bash
GlueCEImplementationName='"CREAM"'
VirtualOrganisation='atlas'
x509UserProxyFQAN='"userFQAN=/atlas/Role=production/Capability=NULL" "userFQAN=/atlas/Role=NULL/Capability=NULL"'
