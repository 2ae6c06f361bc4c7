# clean_inventory.ps1 - a harmless administrative script: list services and free disk space.
Get-Service | Where-Object { $_.Status -eq 'Running' } | Select-Object Name, DisplayName
Get-PSDrive -PSProvider FileSystem |
    Select-Object Name, @{ Name = 'FreeGB'; Expression = { [math]::Round($_.Free / 1GB, 1) } }
