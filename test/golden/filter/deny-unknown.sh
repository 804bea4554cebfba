#!/bin/bash
GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_centos5"'
VirtualOrganisation='dteam'
