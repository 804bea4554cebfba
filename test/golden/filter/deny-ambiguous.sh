#!/bin/bash
GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_sl6"'
GlueHostApplicationSoftwareRunTimeEnvironment[1]='"VO-dteam-tools"'
GlueHostApplicationSoftwareRunTimeEnvironment[2]='"vm_el9"'
VirtualOrganisation='dteam'
