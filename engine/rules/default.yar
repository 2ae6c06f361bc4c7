/*
 * default.yar - the rule set bundled with amsi-broker.
 *
 * Two industry test signatures (EICAR and the AMSI test sample) and rules for well-known malicious
 * script techniques: AMSI bypasses, reflective loading, download cradles, credential dumping,
 * shellcode runners and process injection, Office macro droppers, encoded and hidden launchers,
 * disabling Microsoft Defender, offensive PowerShell frameworks, persistence, obfuscation.
 *
 * Written for the engine's YARA subset (see the engine documentation): text, hex and regular
 * expression strings; conditions built from `of`, counts, `and`/`or`/`not` and `filesize`.
 * Script content is also scanned narrowed from UTF-16LE to UTF-8, so script rules need not be
 * `wide`; base64 runs are decoded and scanned as children, so no rule looks for base64 forms.
 * Rules tagged `normalized` are also matched against the normalised view of script text (lower
 * case, backtick escapes removed, 'a'+'b' joined, whitespace collapsed); their strings are written
 * in lower case with single spaces.
 *
 * Precision comes first: every rule asks for the technique, not for a word that an administrator's
 * script could contain. Each rule has a positive and a near-miss negative sample in
 * tests/engine/data/rules/.
 */

/* ============================================================================================ */
/* Test signatures                                                                              */
/* ============================================================================================ */

// The EICAR anti-malware test file: the standard 68-byte string, anywhere in the content.
rule EICAR_Test_File
{
    meta:
        description = "EICAR anti-malware test file"
        author = "amsi-broker"
        severity = "test"
        reference = "https://www.eicar.org/download-anti-malware-testfile/"

    strings:
        $eicar = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

    condition:
        $eicar
}

// The AMSI test sample: the string every AMSI provider must detect, in ASCII or UTF-16LE.
rule AMSI_Test_Sample
{
    meta:
        description = "AMSI test sample string"
        author = "amsi-broker"
        severity = "test"
        reference = "https://learn.microsoft.com/windows/win32/amsi/"

    strings:
        $sample = "AMSI Test Sample: 7e72c3ce-861b-4339-8740-0ac1484c1386" ascii wide

    condition:
        $sample
}

/* ============================================================================================ */
/* AMSI bypasses                                                                                */
/* ============================================================================================ */

// AMSI bypass by reflection: the private static field AmsiUtils.amsiInitFailed is looked up with
// GetField and set to true, so PowerShell stops calling AMSI for the rest of the session.
rule AMSI_Bypass_AmsiInitFailed
{
    meta:
        description = "AMSI bypass: amsiInitFailed set through reflection"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1562.001"

    strings:
        $field = "amsiInitFailed" nocase
        $getfield = "GetField" nocase
        $setvalue = "SetValue" nocase
        $flags = "NonPublic" nocase

    condition:
        $field and $getfield and ($setvalue or $flags)
}

// AMSI bypass by patching AmsiScanBuffer in memory: the function is named together with the
// classic patch bytes (mov eax, 0x80070057 (E_INVALIDARG); ret, or xor eax, eax; ret), written as
// a PowerShell/C# array, a C string, decimal bytes or raw bytes.
rule AMSI_Bypass_AmsiScanBuffer_Patch
{
    meta:
        description = "AMSI bypass: AmsiScanBuffer patched to return early"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1562.001"

    strings:
        $func = "AmsiScanBuffer" nocase
        $patch_array = /0xb8,\s{0,2}0x57,\s{0,2}0x00,\s{0,2}0x07,\s{0,2}0x80/ nocase
        $patch_cstr = /\\xb8\\x57\\x00\\x07\\x80/ nocase
        $patch_dec = /184,\s{0,2}87,\s{0,2}0,\s{0,2}7,\s{0,2}128/
        $patch_bin = { B8 57 00 07 80 C3 }
        $patch_xor = /0x31,\s{0,2}0xc0,\s{0,2}0xc3/ nocase

    condition:
        $func and any of ($patch*)
}

// AMSI bypass by making amsi.dll writable: the module is resolved (GetProcAddress or an AMSI
// export name) and VirtualProtect is called to patch its code.
rule AMSI_Bypass_AmsiDll_VirtualProtect
{
    meta:
        description = "AMSI bypass: amsi.dll code made writable with VirtualProtect"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1562.001"

    strings:
        $dll = "amsi.dll" nocase
        $protect = "VirtualProtect" nocase
        $resolve = "GetProcAddress" nocase
        $export1 = "AmsiScanBuffer" nocase
        $export2 = "AmsiOpenSession" nocase
        $export3 = "AmsiScanString" nocase

    condition:
        $dll and $protect and ($resolve or any of ($export*))
}

// AMSI bypass by corrupting the session: the private fields amsiContext or amsiSession of
// AmsiUtils are read by reflection and overwritten or nulled.
rule AMSI_Bypass_AmsiContext_Corrupt
{
    meta:
        description = "AMSI bypass: amsiContext/amsiSession overwritten through reflection"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1562.001"

    strings:
        $utils = "AmsiUtils" nocase
        $ctx1 = "amsiContext" nocase
        $ctx2 = "amsiSession" nocase
        $write1 = "WriteInt32" nocase
        $write2 = "WriteInt64" nocase
        $write3 = "SetValue" nocase
        $write4 = "Marshal]::Copy(" nocase

    condition:
        $utils and any of ($ctx*) and any of ($write*)
}

// The same reflection bypasses hidden by backticks, case and 'Am'+'si' concatenation: matched on
// the normalised view, where the type and field names are whole again.
rule PS_Obfuscated_AmsiUtils : normalized
{
    meta:
        description = "Obfuscated AMSI bypass through AmsiUtils reflection"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1562.001"

    strings:
        $utils = "automation.amsiutils"
        $field1 = "amsiinitfailed"
        $field2 = "amsicontext"
        $field3 = "amsisession"
        $getfield = "getfield("

    condition:
        $utils and $getfield and any of ($field*)
}

/* ============================================================================================ */
/* Reflective loading                                                                           */
/* ============================================================================================ */

// A .NET assembly loaded from a base64 string in memory: Assembly.Load or AppDomain.Load fed by
// FromBase64String (the PE never touches the disk).
rule PS_Reflective_Assembly_Load_Base64
{
    meta:
        description = "Reflective .NET assembly load from a base64 string"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1620"

    strings:
        $load1 = "Reflection.Assembly]::Load(" nocase
        $load2 = "AppDomain]::CurrentDomain.Load(" nocase
        $b64 = "FromBase64String(" nocase

    condition:
        any of ($load*) and $b64
}

// A .NET assembly downloaded into memory and loaded from the byte array (WebClient.DownloadData or
// Invoke-WebRequest feeding Assembly.Load).
rule PS_Reflective_Assembly_Load_Download
{
    meta:
        description = "Reflective .NET assembly load of downloaded bytes"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1620"

    strings:
        $load1 = "Reflection.Assembly]::Load(" nocase
        $load2 = "AppDomain]::CurrentDomain.Load(" nocase
        $dl1 = ".DownloadData(" nocase
        $dl2 = "Invoke-WebRequest" nocase
        $dl3 = "Invoke-RestMethod" nocase

    condition:
        any of ($load*) and any of ($dl*)
}

/* ============================================================================================ */
/* Download cradles and living-off-the-land downloaders                                         */
/* ============================================================================================ */

// The classic PowerShell download cradle: WebClient.DownloadString fed to IEX/Invoke-Expression.
rule PS_Download_Cradle_IEX_WebClient
{
    meta:
        description = "PowerShell download cradle: IEX (New-Object Net.WebClient).DownloadString"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1059.001"

    strings:
        $webclient = "Net.WebClient" nocase
        $download = ".DownloadString(" nocase
        $iex1 = "IEX" nocase fullword
        $iex2 = "Invoke-Expression" nocase

    condition:
        $webclient and $download and any of ($iex*)
}

// Invoke-WebRequest / Invoke-RestMethod (or iwr, irm) piped into, or wrapped by, Invoke-Expression.
// Note: one-line installers of some legitimate tools use the same construct and are reported.
rule PS_Download_Cradle_IWR_IEX
{
    meta:
        description = "PowerShell download cradle: Invoke-WebRequest output executed by IEX"
        author = "amsi-broker"
        severity = "medium"
        mitre = "T1059.001"

    strings:
        $pipe = /(iwr|irm|invoke-webrequest|invoke-restmethod)\s[^|\r\n]{1,200}\|\s{0,4}(iex|invoke-expression)/ nocase
        $wrap = /(iex|invoke-expression)\s{0,4}\(\s{0,4}\(?\s{0,4}(iwr|irm|invoke-webrequest|invoke-restmethod)\s/ nocase

    condition:
        any of them
}

// The WebClient cradle obfuscated with backticks, mixed case and split strings: matched on the
// normalised view, e.g. (New-Object "Ne`T.WeBc`Lient")."Down"+"loadString"(...) | &('I'+'EX').
rule PS_Obfuscated_Download_Cradle : normalized
{
    meta:
        description = "Obfuscated PowerShell download cradle (WebClient.DownloadString + IEX)"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1027"

    strings:
        $webclient = "net.webclient"
        $download = "downloadstring"
        $iex1 = "iex" fullword
        $iex2 = "invoke-expression"

    condition:
        $webclient and $download and any of ($iex*)
}

// certutil used as a downloader: -urlcache with a remote URL on the same command line.
rule Win_Certutil_UrlCache_Download
{
    meta:
        description = "certutil -urlcache used to download a file"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1105"

    strings:
        $cmd = /certutil(\.exe)?["']?\s[^\r\n]{0,40}[-\/]urlcache\s[^\r\n]{0,60}(https?|ftp):\/\// nocase

    condition:
        $cmd
}

// bitsadmin used as a downloader: a /transfer job fetching a remote URL.
rule Win_Bitsadmin_Transfer
{
    meta:
        description = "bitsadmin /transfer used to download a file"
        author = "amsi-broker"
        severity = "medium"
        mitre = "T1197"

    strings:
        $cmd = /bitsadmin(\.exe)?["']?\s{1,4}\/transfer\s[^\r\n]{0,120}(https?|ftp):\/\// nocase

    condition:
        $cmd
}

// mshta running a remote HTA or inline VBScript/JScript.
rule Win_Mshta_Remote_Script
{
    meta:
        description = "mshta executing a remote or inline script"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1218.005"

    strings:
        $cmd = /mshta(\.exe)?["']?\s{1,4}["']?(https?:\/\/|vbscript:|javascript:)/ nocase

    condition:
        $cmd
}

// regsvr32 loading a remote COM scriptlet through scrobj.dll ("Squiblydoo").
rule Win_Regsvr32_Squiblydoo
{
    meta:
        description = "regsvr32 /i:<url> scrobj.dll remote scriptlet execution"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1218.010"

    strings:
        $cmd = /regsvr32(\.exe)?["']?\s[^\r\n]{0,60}\/i:["']?https?:\/\/[^\r\n]{0,200}scrobj/ nocase

    condition:
        $cmd
}

// rundll32 running JavaScript through mshtml's RunHTMLApplication entry point.
rule Win_Rundll32_JavaScript
{
    meta:
        description = "rundll32 javascript: mshtml,RunHTMLApplication"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1218.011"

    strings:
        $rundll = "rundll32" nocase
        $js = "javascript:" nocase
        $entry = "mshtml,RunHTMLApplication" nocase

    condition:
        all of them
}

/* ============================================================================================ */
/* Credential dumping                                                                           */
/* ============================================================================================ */

// Mimikatz module::command strings, as typed on its command line or passed by a wrapper.
rule Mimikatz_Command_Strings
{
    meta:
        description = "Mimikatz credential dumping commands"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1003.001"

    strings:
        $cmd1 = "sekurlsa::logonpasswords" nocase
        $cmd2 = "sekurlsa::pth" nocase
        $cmd3 = "sekurlsa::tickets" nocase
        $cmd4 = "sekurlsa::wdigest" nocase
        $cmd5 = "sekurlsa::ekeys" nocase
        $cmd6 = "lsadump::sam" nocase
        $cmd7 = "lsadump::dcsync" nocase
        $cmd8 = "lsadump::secrets" nocase
        $cmd9 = "lsadump::lsa" nocase
        $cmd10 = "kerberos::golden" nocase
        $cmd11 = "kerberos::ptt" nocase
        $debug = "privilege::debug" nocase
        $elevate = "token::elevate" nocase

    condition:
        any of ($cmd*) or ($debug and $elevate)
}

// The PowerSploit/Empire in-memory Mimikatz wrapper, by its function name.
rule PS_Invoke_Mimikatz
{
    meta:
        description = "Invoke-Mimikatz (reflectively loaded Mimikatz)"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1003.001"

    strings:
        $name = "Invoke-Mimikatz" nocase

    condition:
        $name
}

// LSASS memory dumped with the MiniDump export of comsvcs.dll (by name or ordinal 24).
rule Win_Lsass_Comsvcs_MiniDump
{
    meta:
        description = "Process memory dump through comsvcs.dll MiniDump (LSASS dumping)"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1003.001"

    strings:
        $cmd = /comsvcs(\.dll)?["']?[\s,]{1,6}(minidump|#\+?0{0,4}24)/ nocase

    condition:
        $cmd
}

// LSASS memory dumped with Sysinternals procdump (-ma lsass).
rule Win_Lsass_Procdump
{
    meta:
        description = "procdump -ma lsass (LSASS memory dump)"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1003.001"

    strings:
        $cmd = /procdump(64)?(\.exe)?["']?\s[^\r\n]{0,40}-ma\s{1,4}["']?lsass/ nocase

    condition:
        $cmd
}

// A script calling MiniDumpWriteDump on the lsass process (Out-Minidump and its copies).
rule PS_Lsass_MiniDumpWriteDump
{
    meta:
        description = "MiniDumpWriteDump of the lsass process from a script"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1003.001"

    strings:
        $api = "MiniDumpWriteDump" nocase
        $lsass = "lsass" nocase

    condition:
        $api and $lsass
}

/* ============================================================================================ */
/* Shellcode runners and injection                                                              */
/* ============================================================================================ */

// The shellcode runner triad: VirtualAlloc + copying the bytes + CreateThread (and waiting on it).
rule PS_Shellcode_Runner_CreateThread
{
    meta:
        description = "Shellcode runner: VirtualAlloc, copy, CreateThread"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1055"

    strings:
        $alloc = "VirtualAlloc" nocase
        $thread = "CreateThread" nocase
        $copy1 = "Marshal]::Copy(" nocase
        $copy2 = "memset" nocase
        $copy3 = "RtlMoveMemory" nocase
        $copy4 = "WaitForSingleObject" nocase

    condition:
        $alloc and $thread and any of ($copy*)
}

// The delegate-based runner: shellcode copied into VirtualAlloc'd memory and called through
// Marshal.GetDelegateForFunctionPointer.
rule PS_Shellcode_Runner_Delegate
{
    meta:
        description = "Shellcode runner: VirtualAlloc, Marshal.Copy, GetDelegateForFunctionPointer"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1055"

    strings:
        $delegate = "GetDelegateForFunctionPointer" nocase
        $alloc = "VirtualAlloc" nocase
        $copy = "Marshal]::Copy(" nocase

    condition:
        all of them
}

// The opening bytes of Metasploit / Cobalt Strike x86 and x64 shellcode stubs, as a hex array
// (PowerShell, C#), a C string, unsigned or signed (VBA) decimal bytes, or raw bytes.
rule Shellcode_Stager_Prologue
{
    meta:
        description = "Metasploit/Cobalt Strike shellcode stub prologue"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1055"

    strings:
        $x86_hex = /0xfc,\s{0,2}0xe8,\s{0,2}0x8[29],\s{0,2}0x00,\s{0,2}0x00,\s{0,2}0x00/ nocase
        $x64_hex = /0xfc,\s{0,2}0x48,\s{0,2}0x83,\s{0,2}0xe4,\s{0,2}0xf0,\s{0,2}0xe8/ nocase
        $x86_cstr = /\\xfc\\xe8\\x8[29]\\x00\\x00\\x00/ nocase
        $x64_cstr = /\\xfc\\x48\\x83\\xe4\\xf0\\xe8/ nocase
        $x86_dec = /252,\s{0,2}232,\s{0,2}13[07],\s{0,2}0,\s{0,2}0,\s{0,2}0,/
        $x64_dec = /252,\s{0,2}72,\s{0,2}131,\s{0,2}228,\s{0,2}240,\s{0,2}232,/
        $x86_vba = /-4,\s{0,2}-24,\s{0,2}-1(26|19),\s{0,2}0,\s{0,2}0,\s{0,2}0,/
        $x64_vba = /-4,\s{0,2}72,\s{0,2}-125,\s{0,2}-28,\s{0,2}-16,\s{0,2}-24,/
        $x86_bin = { FC E8 ( 82 | 89 ) 00 00 00 60 89 E5 }
        $x64_bin = { FC 48 83 E4 F0 E8 ( C0 | C8 | CC ) 00 00 00 }

    condition:
        any of them
}

// Classic remote process injection: OpenProcess + VirtualAllocEx + WriteProcessMemory and a
// remote thread or APC.
rule Process_Injection_Remote_Thread
{
    meta:
        description = "Process injection: VirtualAllocEx, WriteProcessMemory, CreateRemoteThread"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1055.002"

    strings:
        $open = "OpenProcess" nocase
        $alloc = "VirtualAllocEx" nocase
        $write = "WriteProcessMemory" nocase
        $run1 = "CreateRemoteThread" nocase
        $run2 = "NtCreateThreadEx" nocase
        $run3 = "QueueUserAPC" nocase

    condition:
        $open and $alloc and $write and any of ($run*)
}

/* ============================================================================================ */
/* Office macros and script droppers                                                            */
/* ============================================================================================ */

// An Office macro that runs on open (AutoOpen, Document_Open, Workbook_Open, ...) and starts a
// process (Shell, WScript.Shell, Shell.Application, ShellExecute, Win32_Process, PowerShell).
rule VBA_AutoExec_Shell
{
    meta:
        description = "Office macro auto-exec entry point that starts a process"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1204.002"

    strings:
        $auto1 = "Sub AutoOpen" nocase fullword
        $auto2 = "Sub Auto_Open" nocase fullword
        $auto3 = "Sub Document_Open" nocase fullword
        $auto4 = "Sub Workbook_Open" nocase fullword
        $auto5 = "Sub AutoExec" nocase fullword
        $auto6 = "Sub AutoClose" nocase fullword
        $auto7 = "Sub Document_Close" nocase fullword
        $exec1 = "WScript.Shell" nocase
        $exec2 = "Shell.Application" nocase
        $exec3 = "ShellExecute" nocase
        $exec4 = "Win32_Process" nocase
        $exec5 = "powershell" nocase
        $exec6 = /[\s=(:]shell(\s{1,4}|\s{0,4}\(\s{0,4})["a-z_]/ nocase

    condition:
        any of ($auto*) and any of ($exec*)
}

// A VBA/VBScript/JScript dropper: an HTTP object downloads, ADODB.Stream saves the file, and a
// shell object runs it.
rule Script_Dropper_XMLHTTP_ADODB
{
    meta:
        description = "Script dropper: XMLHTTP download, ADODB.Stream SaveToFile, shell execution"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1105"

    strings:
        $http1 = "MSXML2.XMLHTTP" nocase
        $http2 = "MSXML2.ServerXMLHTTP" nocase
        $http3 = "Microsoft.XMLHTTP" nocase
        $http4 = "WinHttp.WinHttpRequest" nocase
        $stream = "ADODB.Stream" nocase
        $save = ".SaveToFile" nocase
        $run1 = "WScript.Shell" nocase
        $run2 = "Shell.Application" nocase
        $run3 = "ShellExecute" nocase
        $run4 = "Win32_Process" nocase

    condition:
        any of ($http*) and $stream and $save and any of ($run*)
}

/* ============================================================================================ */
/* Launchers                                                                                    */
/* ============================================================================================ */

// PowerShell started with an encoded command and a hidden window, the shape of most stagers
// (powershell -nop -w hidden -enc <base64>). The decoded command is scanned as a child object.
rule PS_EncodedCommand_Hidden_Launcher
{
    meta:
        description = "PowerShell launched hidden with -EncodedCommand"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1027"

    strings:
        $enc = /(powershell|pwsh)(\.exe)?["']?\s([^\r\n]{0,120}\s)?[-\/]e(c|nc?|ncodedcommand)?\s{1,4}["']?[a-z0-9+\/]{40}/ nocase
        $hidden = /\s[-\/]w[a-z]{0,10}\s{1,4}["']?(hidden|1)[\s"']/ nocase

    condition:
        $enc and $hidden
}

// PowerShell started with the execution policy bypassed and a hidden window.
rule PS_ExecutionPolicy_Bypass_Hidden
{
    meta:
        description = "PowerShell launched hidden with -ExecutionPolicy Bypass"
        author = "amsi-broker"
        severity = "medium"
        mitre = "T1059.001"

    strings:
        $bypass = /(powershell|pwsh)(\.exe)?["']?\s[^\r\n]{0,160}[-\/](ep|ex[a-z]{0,13})\s{1,4}["']?bypass/ nocase
        $hidden = /\s[-\/]w[a-z]{0,10}\s{1,4}["']?(hidden|1)[\s"']/ nocase

    condition:
        $bypass and $hidden
}

/* ============================================================================================ */
/* Disabling Microsoft Defender                                                                 */
/* ============================================================================================ */

// Defender protection switched off with Set-MpPreference -Disable...Monitoring $true (or 1).
rule PS_Defender_Disable_Preference
{
    meta:
        description = "Microsoft Defender protection disabled with Set-MpPreference"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1562.001"

    strings:
        $cmd = /set-mppreference\s[^\r\n]{0,120}-disable(realtimemonitoring|behaviormonitoring|ioavprotection|scriptscanning|intrusionpreventionsystem|blockatfirstseen)[\s:]{1,4}(\$true|1)/ nocase

    condition:
        $cmd
}

// The same Set-MpPreference call obfuscated with backticks and case: matched on the normalised
// view.
rule PS_Obfuscated_Defender_Disable : normalized
{
    meta:
        description = "Obfuscated Set-MpPreference disabling Defender real-time protection"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1562.001"

    strings:
        $cmdlet = "set-mppreference"
        $off1 = "-disablerealtimemonitoring $true"
        $off2 = "-disablerealtimemonitoring 1"
        $off3 = "-disablerealtimemonitoring:$true"
        $off4 = "-disablebehaviormonitoring $true"
        $off5 = "-disableioavprotection $true"
        $off6 = "-disablescriptscanning $true"

    condition:
        $cmdlet and any of ($off*)
}

// Defender turned off by policy in the registry (DisableAntiSpyware / DisableRealtimeMonitoring
// set to 1 under Policies\Microsoft\Windows Defender).
rule Win_Defender_Disable_Registry
{
    meta:
        description = "Microsoft Defender disabled through its policy registry values"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1562.001"

    strings:
        $key = "\\Policies\\Microsoft\\Windows Defender" nocase
        $value1 = "DisableAntiSpyware" nocase
        $value2 = "DisableAntiVirus" nocase
        $value3 = "DisableRealtimeMonitoring" nocase
        $value4 = "DisableBehaviorMonitoring" nocase
        $one1 = /\/d\s{1,4}["']?(1|0x0{0,7}1)["'\s]/ nocase
        $one2 = /-value\s{1,4}["']?(1|0x0{0,7}1)["'\s]/ nocase

    condition:
        $key and any of ($value*) and any of ($one*)
}

/* ============================================================================================ */
/* Offensive PowerShell frameworks                                                              */
/* ============================================================================================ */

// Function names of PowerSploit and PowerView modules that have no administrative use.
rule PS_PowerSploit_Functions
{
    meta:
        description = "PowerSploit/PowerView offensive function names"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1059.001"

    strings:
        $f1 = "Invoke-ReflectivePEInjection" nocase fullword
        $f2 = "Invoke-Shellcode" nocase fullword
        $f3 = "Invoke-DllInjection" nocase fullword
        $f4 = "Invoke-TokenManipulation" nocase fullword
        $f5 = "Invoke-CredentialInjection" nocase fullword
        $f6 = "Get-GPPPassword" nocase fullword
        $f7 = "Get-GPPAutologon" nocase fullword
        $f8 = "Out-Minidump" nocase fullword
        $f9 = "Get-Keystrokes" nocase fullword
        $f10 = "Invoke-NinjaCopy" nocase fullword
        $f11 = "Get-VaultCredential" nocase fullword
        $f12 = "Get-TimedScreenshot" nocase fullword
        $f13 = "Install-SSP" nocase fullword
        $f14 = "Invoke-Kerberoast" nocase fullword
        $f15 = "Find-AVSignature" nocase fullword
        $f16 = "Invoke-UserHunter" nocase fullword
        $f17 = "Invoke-ShareFinder" nocase fullword
        $f18 = "Find-LocalAdminAccess" nocase fullword

    condition:
        any of them
}

// Function names of PowerShell Empire modules and companion attack tools.
rule PS_Empire_Functions
{
    meta:
        description = "PowerShell Empire and related attack tool function names"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1059.001"

    strings:
        $f1 = "Invoke-Empire" nocase fullword
        $f2 = "Invoke-PSInject" nocase fullword
        $f3 = "Invoke-BypassUAC" nocase fullword
        $f4 = "Invoke-EventVwrBypass" nocase fullword
        $f5 = "Invoke-FodHelperBypass" nocase fullword
        $f6 = "Invoke-WScriptBypassUAC" nocase fullword
        $f7 = "Invoke-PowerDump" nocase fullword
        $f8 = "Invoke-SessionGopher" nocase fullword
        $f9 = "Get-SiteListPassword" nocase fullword
        $f10 = "Invoke-MetasploitPayload" nocase fullword
        $f11 = "Invoke-DCSync" nocase fullword
        $f12 = "Invoke-SMBExec" nocase fullword
        $f13 = "Invoke-WMIExec" nocase fullword
        $f14 = "Invoke-TheHash" nocase fullword
        $f15 = "Invoke-Inveigh" nocase fullword
        $f16 = "Invoke-BloodHound" nocase fullword

    condition:
        any of them
}

// A stager that downloads bytes and decrypts them with an inline RC4 (key schedule over 0..255,
// two "% 256" steps, -bxor), as Empire's stage-0 does.
rule PS_RC4_Decrypt_Downloaded_Stage
{
    meta:
        description = "PowerShell stager: downloaded data decrypted with inline RC4"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1140"

    strings:
        $ksa = /0\.\.255\s{0,2}\|\s{0,2}(%|foreach(-object)?)\s{0,2}\{/ nocase
        $mod = "%256"
        $xor = "-bxor" nocase
        $download = ".DownloadData(" nocase

    condition:
        $ksa and #mod >= 2 and $xor and $download
}

/* ============================================================================================ */
/* Persistence                                                                                  */
/* ============================================================================================ */

// WMI event subscription persistence: an __EventFilter bound to a command-line or script consumer,
// created from PowerShell or a MOF file.
rule PS_WMI_Event_Persistence
{
    meta:
        description = "WMI event subscription persistence (__EventFilter + consumer + binding)"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1546.003"

    strings:
        $filter = "__EventFilter" nocase
        $consumer1 = "CommandLineEventConsumer" nocase
        $consumer2 = "ActiveScriptEventConsumer" nocase
        $binding = "__FilterToConsumerBinding" nocase
        $create1 = "Set-WmiInstance" nocase
        $create2 = "New-CimInstance" nocase
        $create3 = "instance of" nocase
        $create4 = ".Put()" nocase
        $create5 = "SpawnInstance_" nocase

    condition:
        $filter and any of ($consumer*) and $binding and any of ($create*)
}

// schtasks /create whose action is a script host or LOLBin started hidden, encoded, from a URL or
// from a user-writable folder.
rule Win_Schtasks_Suspicious_Action
{
    meta:
        description = "Scheduled task created to run a hidden, encoded or remote script"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1053.005"

    strings:
        $cmd = /schtasks(\.exe)?\s{1,4}\/create\s[^\r\n]{0,200}\/tr\s{1,4}[^\r\n]{0,80}(powershell|pwsh|mshta|rundll32|regsvr32|wscript|cscript)[^\r\n]{0,160}(\s-e(c|nc?|ncodedcommand)?\s|hidden|https?:\/\/|frombase64string|\\appdata\\|\\temp\\|\\users\\public\\)/ nocase

    condition:
        $cmd
}

// A scheduled task registered from PowerShell whose action argument starts PowerShell hidden,
// encoded or with a download/execute expression.
rule PS_ScheduledTask_Hidden_Action
{
    meta:
        description = "Register-ScheduledTask with a hidden, encoded or download action"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1053.005"

    strings:
        $action = "New-ScheduledTaskAction" nocase
        $register = "Register-ScheduledTask" nocase
        $arg1 = /-argument\s{1,4}["'][^"'\r\n]{0,120}-w[a-z]{0,10}\s{1,4}(hidden|1)/ nocase
        $arg2 = /-argument\s{1,4}["'][^"'\r\n]{0,120}-e(c|nc?|ncodedcommand)?\s{1,4}[a-z0-9+\/]{20}/ nocase
        $arg3 = /-argument\s{1,4}["'][^"'\r\n]{0,160}(downloadstring|frombase64string|iex|invoke-expression)/ nocase

    condition:
        $action and $register and any of ($arg*)
}

// A Run/RunOnce registry value whose command is a script host or LOLBin started hidden, encoded,
// from a URL or from a user-writable folder.
rule Win_Run_Key_Suspicious_Command
{
    meta:
        description = "Run key persistence with a hidden, encoded or remote script command"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1547.001"

    strings:
        $cmd = /\\currentversion\\run(once)?["']?[\s,][^\r\n]{0,200}(powershell|pwsh|mshta|rundll32|regsvr32|wscript|cscript)[^\r\n]{0,160}(\s-e(c|nc?|ncodedcommand)?\s|hidden|https?:\/\/|frombase64string|javascript:|\\appdata\\|\\temp\\|\\users\\public\\)/ nocase

    condition:
        $cmd
}

// UAC bypass by hijacking a shell open command under HKCU for an auto-elevating binary
// (fodhelper/computerdefaults: ms-settings, eventvwr: mscfile, sdclt: exefile runas).
rule Win_UAC_Bypass_Shell_Open_Command
{
    meta:
        description = "UAC bypass through an HKCU shell\\open\\command hijack"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1548.002"

    strings:
        $key1 = "ms-settings\\shell\\open\\command" nocase
        $key2 = "mscfile\\shell\\open\\command" nocase
        $key3 = "exefile\\shell\\runas\\command" nocase
        $trigger1 = "DelegateExecute" nocase
        $trigger2 = "fodhelper" nocase
        $trigger3 = "computerdefaults" nocase
        $trigger4 = "eventvwr" nocase
        $trigger5 = "sdclt" nocase
        $trigger6 = "IsolatedCommand" nocase

    condition:
        any of ($key*) and any of ($trigger*)
}

/* ============================================================================================ */
/* Obfuscation                                                                                  */
/* ============================================================================================ */

// Invoke-Obfuscation string reordering: ("{2}{0}{1}" -f 'ke','-Expression','Invo'), a format
// string of three or more placeholders that does not start at {0}.
rule PS_Obfuscation_Format_Reorder
{
    meta:
        description = "Invoke-Obfuscation reordered format-string pieces"
        author = "amsi-broker"
        severity = "medium"
        mitre = "T1027"

    strings:
        $fmt = /\(\s{0,4}["']\{[1-9][0-9]?\}(\{[0-9]{1,2}\}){2,16}["']\s{0,4}-f\s{0,4}["']/ nocase

    condition:
        $fmt
}

// IEX spelled out of characters of automatic variables, an Invoke-Obfuscation artefact:
// $ShellId[1]+$ShellId[13], $PSHome[4]+$PSHome[30], $env:ComSpec[4,15,25], $env:Public[13],
// $VerbosePreference.ToString()[1,3]. Matched on the normalised view to see through backticks.
rule PS_Obfuscation_IEX_Variable_Slice : normalized
{
    meta:
        description = "Invoke-Obfuscation IEX built from automatic variable characters"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1027"

    strings:
        $slice1 = /\$(shellid|pshome|env:comspec|env:public)\[\s{0,2}[0-9]{1,2}\s{0,2}[,\]]/ nocase
        $slice2 = /verbosepreference(\.tostring\(\)|\))\[\s{0,2}[0-9]\s{0,2},/ nocase
        $slice3 = /\(\s{0,2}["']\*mdr\*["']\s{0,2}\)\.name\[/ nocase

    condition:
        any of them
}

// Code rebuilt from character codes and executed: [char[]] casts (or many [char] casts) joined or
// XOR-decoded, together with IEX/Invoke-Expression.
rule PS_Obfuscation_CharCode_IEX
{
    meta:
        description = "PowerShell code rebuilt from character codes and run with IEX"
        author = "amsi-broker"
        severity = "medium"
        mitre = "T1027"

    strings:
        $char = "[char]" nocase
        $chars = "[char[]]" nocase
        $join1 = "-join" nocase
        $join2 = "[string]::join(" nocase
        $xor = "-bxor" nocase
        $iex1 = "IEX" nocase fullword
        $iex2 = "Invoke-Expression" nocase

    condition:
        any of ($iex*) and ($chars or #char >= 8) and any of ($join*, $xor)
}

// A compressed, base64-encoded script inflated in memory and run: FromBase64String into a
// Deflate/GZip stream, then IEX (Invoke-Obfuscation COMPRESS, many stagers).
rule PS_Compressed_Base64_IEX
{
    meta:
        description = "Base64 + Deflate/GZip compressed script executed with IEX"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1027"

    strings:
        $stream1 = "Compression.DeflateStream" nocase
        $stream2 = "Compression.GZipStream" nocase
        $b64 = "FromBase64String" nocase
        $iex1 = "IEX" nocase fullword
        $iex2 = "Invoke-Expression" nocase

    condition:
        any of ($stream*) and $b64 and any of ($iex*)
}

/* ============================================================================================ */
/* Impact, collection and remote control                                                        */
/* ============================================================================================ */

// Recovery sabotage before encryption: all shadow copies deleted (vssadmin /all, wmic, WMI),
// Windows recovery disabled, or the backup catalog deleted.
rule Win_Shadow_Copy_Deletion
{
    meta:
        description = "Shadow copies or backups deleted, recovery disabled (ransomware prelude)"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1490"

    strings:
        $vssadmin = /vssadmin(\.exe)?["']?\s{1,4}delete\s{1,4}shadows[^\r\n]{0,40}\/all/ nocase
        $wmic = /wmic(\.exe)?["']?\s{1,4}shadowcopy\s{1,4}delete/ nocase
        $wmi = /win32_shadowcopy[^\r\n]{0,80}(\.delete\(\)|remove-wmiobject|remove-ciminstance)/ nocase
        $bcdedit = /bcdedit(\.exe)?["']?\s{1,4}\/set\s{1,4}\{default\}\s{1,4}recoveryenabled\s{1,4}no/ nocase
        $wbadmin = /wbadmin(\.exe)?["']?\s{1,4}delete\s{1,4}catalog/ nocase

    condition:
        any of them
}

// A keylogger: GetAsyncKeyState polled with keyboard-state translation and window tracking, or a
// low-level keyboard hook.
rule PS_Keylogger_API
{
    meta:
        description = "Keylogger built on GetAsyncKeyState or a low-level keyboard hook"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1056.001"

    strings:
        $poll = "GetAsyncKeyState" nocase
        $k1 = "GetKeyboardState" nocase
        $k2 = "MapVirtualKey" nocase
        $k3 = "ToUnicode" nocase
        $k4 = "GetForegroundWindow" nocase
        $hook = "SetWindowsHookEx" nocase
        $ll = "WH_KEYBOARD_LL" nocase

    condition:
        ($poll and 2 of ($k*)) or ($hook and $ll)
}

// A PowerShell reverse shell: a TCPClient stream whose received text is run with IEX, or the
// 0..65535|%{0} receive buffer of the well-known one-liner.
rule PS_Reverse_Shell_TCPClient
{
    meta:
        description = "PowerShell reverse shell over Net.Sockets.TCPClient"
        author = "amsi-broker"
        severity = "high"
        mitre = "T1059.001"

    strings:
        $tcp = "Net.Sockets.TCPClient" nocase
        $stream = ".GetStream()" nocase
        $iex1 = "IEX" nocase fullword
        $iex2 = "Invoke-Expression" nocase
        $buffer = /0\.\.65535\s{0,2}\|\s{0,2}(%|foreach-object)\s{0,2}\{\s{0,2}0\s{0,2}\}/ nocase

    condition:
        $tcp and $stream and (any of ($iex*) or $buffer)
}
