/* amsi_example.c - scans a buffer through the broker, as a script host would. */
#include <amsi.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *script = argc > 1 ? argv[1] : "Write-Host 'hello'";
    HAMSICONTEXT ctx;
    AMSI_RESULT result;
    if (AmsiInitializeA("amsi-example", &ctx) != AMSI_S_OK)
        return 2;
    HRESULT hr = AmsiScanBufferA(ctx, script, strlen(script), "example.ps1", NULL, &result);
    printf("hr=0x%08x result=%d %s\n", (unsigned)hr, (int)result,
           AmsiResultIsMalware(result) ? "malware: block it" : "run it");
    AmsiUninitialize(ctx);
    return AmsiResultIsMalware(result) ? 1 : 0;
}
