/*
 * Rules used only by the amsid integration tests (tests/broker/test_amsid.c), loaded next to the
 * bundled rules.
 */

// A signature the tests split over two script blocks: only a session's stream, which sees the
// blocks as one text, can find it when each half is scanned alone.
rule Test_Split_Signature
{
    meta:
        description = "test signature for session scans"
        author = "amsi-broker tests"

    strings:
        $a = "SPLIT-SIGNATURE-0123456789"

    condition:
        $a
}
