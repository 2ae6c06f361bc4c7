# clean_cleanup.ps1 - a harmless maintenance script: delete temp files older than a week.
$limit = (Get-Date).AddDays(-7)
Get-ChildItem -Path $env:TEMP -File -Recurse -ErrorAction SilentlyContinue |
    Where-Object { $_.LastWriteTime -lt $limit } |
    Remove-Item -WhatIf
Write-Output "Cleanup preview finished at $(Get-Date -Format s)"
