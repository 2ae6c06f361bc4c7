/*
 * test_rules_parse.c - the YARA-subset parser (engine/src/rules_parse.c): every construct of the
 * documented subset is accepted, and everything outside it is rejected with "file:line: reason"
 * naming the right line. Rules are compiled through the public API, so a construct that parses
 * but cannot compile would fail here too.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/engine.h"
#include "rules.h"

/* Compiles text; returns the code and leaves the diagnostic in *diag. */
static int compile(const char *text, engine_diag *diag)
{
    engine_rules *rules = NULL;
    int rc = engine_rules_compile_string(text, "t.yar", NULL, &rules, diag);
    engine_rules_unref(rules);
    return rc;
}

static void assert_accepts(const char *text)
{
    engine_diag diag;
    int rc = compile(text, &diag);
    if (rc != 0)
        fail_msg("rejected: %s\n--- rule text:\n%s", diag.text, text);
}

/* Asserts a rejection whose message starts with "t.yar:LINE: " and contains `reason`. */
static void assert_rejects(const char *text, unsigned line, const char *reason)
{
    engine_diag diag;
    int rc = compile(text, &diag);
    if (rc != ENGINE_ERULES)
        fail_msg("expected ENGINE_ERULES, got %d (%s) for:\n%s", rc, diag.text, text);
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "t.yar:%u: ", line);
    if (strncmp(diag.text, prefix, strlen(prefix)) != 0 || strstr(diag.text, reason) == NULL)
        fail_msg("message '%s' lacks '%s' or '%s'", diag.text, prefix, reason);
    assert_int_equal(diag.line, line);
    assert_string_equal(diag.file, "t.yar");
}

static void test_accepts_the_subset(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "rule a { condition: true }",
        "rule a { condition: false or true }",
        "rule a : t1 t2 { meta: s = \"x\" i = 10 n = -3 b = true c = false condition: true }",
        "rule a { strings: $a = \"abc\" condition: $a }",
        "rule a { strings: $a = \"abc\" nocase ascii wide fullword private condition: $a }",
        "rule a { strings: $a = \"\\x41\\\"\\\\\\t\\n\\r\" condition: $a }",
        "rule a { strings: $a = { 4D 5A ?? 4? ?A [4] [2-8] [10-] [-] ( AA | BB CC ) 00 } "
        "condition: $a }",
        "rule a { strings: $a = { 4d 5a // comment\n 90 /* c */ 00 } condition: $a }",
        "rule a { strings: $a = { AA ( BB | ( CC | DD EE ) ) FF } condition: $a }",
        "rule a { strings: $a = /ab+c/ condition: $a }",
        "rule a { strings: $a = /a\\/b[x-z]{,3}c/is condition: $a }",
        "rule a { strings: $a = /[\\]\\/]x/ nocase ascii private condition: $a }",
        "rule a { strings: $a = \"x1\" $b = \"x2\" condition: any of them }",
        "rule a { strings: $a = \"x1\" $b = \"x2\" condition: all of them }",
        "rule a { strings: $a = \"x1\" $b = \"x2\" condition: none of them }",
        "rule a { strings: $a = \"x1\" $b = \"x2\" condition: 2 of them }",
        "rule a { strings: $a1 = \"x1\" $a2 = \"x2\" $b = \"x3\" condition: 1 of ($a*, $b) }",
        "rule a { strings: $a1 = \"x1\" $b = \"x3\" condition: any of ($*) }",
        "rule a { strings: $ = \"x1\" $ = \"x2\" condition: all of them }",
        "rule a { strings: $a = \"x1\" condition: #a > 2 and #a < 10 and #a >= 1 and #a <= 9 "
        "and #a == 3 or #a != 4 }",
        "rule a { strings: $a = { AA ?? BB } condition: #a == 2 }",
        "rule a { strings: $a = /ab[cd]/ condition: #a == 2 }",
        "rule a { condition: filesize < 10KB and filesize > 1 and filesize <= 2MB }",
        "rule a { condition: 5 < filesize }",
        "rule a { strings: $a = \"x\" $b = \"y\" condition: ($a and not $b) or (not ($a or $b))}",
        "rule a { condition: true }\nrule b { condition: false }",
        "rule a { strings: $a = \"x1\" condition: 0x10 > #a }",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        assert_accepts(ok[i]);
}

static void test_rejects_outside_the_subset(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        unsigned line;
        const char *reason;
    } bad[] = {
        {"import \"pe\"\nrule a { condition: true }", 1, "modules are not supported"},
        {"private rule a { condition: true }", 1, "rule modifier 'private'"},
        {"global rule a { condition: true }", 1, "rule modifier 'global'"},
        {"rule a {\n strings: $a = \"x\" xor\n condition: $a }", 2, "'xor' is not supported"},
        {"rule a {\n strings: $a = \"x\" base64\n condition: $a }", 2, "'base64'"},
        {"rule a {\n strings: $a = /x/ wide\n condition: $a }", 2,
         "'wide' is not supported on regular expressions"},
        {"rule a {\n strings: $a = /x/ fullword\n condition: $a }", 2, "'fullword'"},
        {"rule a {\n strings: $a = { AA } nocase\n condition: $a }", 2, "hex strings"},
        {"rule a {\n strings: $a = \"x\" nocase nocase\n condition: $a }", 2, "duplicated"},
        {"rule a {\n strings: $a = \"x\"\n $a = \"y\"\n condition: $a }", 3, "duplicated string"},
        {"rule a {\n strings: $a = \"x\"\n $b = \"y\"\n condition: $a }", 3, "unreferenced string"},
        {"rule a {\n strings: $a = \"x\"\n condition: $b }", 3, "undefined string"},
        {"rule a {\n strings: $a = \"x\"\n condition: $a at 0 }", 3, "'at'"},
        {"rule a {\n strings: $a = \"x\"\n condition: $a in (0..10) }", 3, "'in'"},
        {"rule a {\n strings: $a = \"x\"\n condition: @a[1] == 0 }", 3, "match offsets"},
        {"rule a {\n strings: $a = \"x\"\n condition: !a[1] == 0 }", 3, "match lengths"},
        {"rule a {\n condition: for any i in (1..2): (true) }", 2, "'for'"},
        {"rule a {\n condition: uint16(0) == 0x5a4d }", 2, "integer functions"},
        {"rule a {\n condition: filesize + 1 > 2 }", 2, "arithmetic"},
        {"rule a { condition: true }\nrule b {\n condition: a }", 3, "rule references"},
        {"rule a {\n condition: foo }", 2, "unknown identifier 'foo'"},
        {"rule a { condition: true }\nrule a { condition: true }", 2, "duplicated rule name"},
        {"rule a {\n strings: $a = \"x\"\n condition: 50% of them }", 3, "percentages"},
        {"rule a {\n strings: $a = \"x\"\n condition: $a matches /x/ }", 3, "'matches'"},
        {"rule a {\n strings: $a = \"x\"\n condition: $a contains \"y\" }", 3, "'contains'"},
        {"rule a {\n strings: $a = \"\\q\"\n condition: $a }", 2, "illegal escape"},
        {"rule a {\n strings: $a = \"\\x4\"\n condition: $a }", 2, "bad \\x escape"},
        {"rule a {\n strings: $a = \"\"\n condition: $a }", 2, "empty text string"},
        {"rule a {\n strings: $a = \"abc\n\" condition: $a }", 2, "unterminated text string"},
        {"rule a {\n strings: $a = { AG }\n condition: $a }", 2, "invalid hex digit"},
        {"rule a {\n strings: $a = { ?? ?? }\n condition: $a }", 2, "no fixed byte"},
        {"rule a {\n strings: $a = { AA [5-2] BB }\n condition: $a }", 2, "lower bound"},
        {"rule a {\n strings: $a = { AA ~BB }\n condition: $a }", 2, "'~'"},
        {"rule a {\n strings: $a = { AA ( BB | ) }\n condition: $a }", 2, "empty"},
        {"rule a {\n strings: $a = { AA BB\n condition: $a }", 3, "hex"},
        {"rule a {\n strings: $a = /abc\n condition: $a }", 2, "unterminated regular"},
        {"rule a {\n strings: $a = /abc/m\n condition: $a }", 2, "flag 'm'"},
        {"rule a {\n strings: $a = /(?<=a)b/\n condition: $a }", 2, "rule a, string $a"},
        {"rule a {\n strings: $a = /a*/\n condition: $a }", 2, "empty string"},
        {"rule a {\n strings: $a = /ab+/\n condition: #a > 1 }", 2, "vary in length"},
        {"rule a {\n strings: $a = { AA [1-2] BB }\n condition: #a > 1 }", 2, "vary in length"},
        {"rule a {\n condition: any of them }", 2, "no strings"},
        {"rule a {\n condition: any }", 2, "expected 'of'"},
        {"rule a {\n condition: filesize }", 2, "must be compared"},
        {"rule a {\n condition: 1 < filesize < 3 }", 2, "chained comparisons"},
        {"rule a {\n condition: true true }", 2, "unexpected"},
        {"rule a {\n condition: (true }", 2, "expected ')'"},
        {"rule a {\n condition: }", 2, "incomplete condition"},
        {"rule a {\n strings:\n condition: true }", 3, "empty 'strings:'"},
        {"rule a {\n meta: x = y\n condition: true }", 2, "meta value"},
        {"rule a {\n condition: true", 2, "expected '}'"},
        {"rule and { condition: true }", 1, "keyword"},
        {"rule a { /* never closed\n condition: true }", 1, "unterminated comment"},
        {"rule a {\n condition: 99999999999999999999 > 1 }", 2, "out of range"},
        {"rule a {\n strings: $a = \"x\"\n condition: $a* }", 3, "string set"},
        {"rule a {\n strings: $a* = \"x\"\n condition: $a }", 2, "'*' is not allowed"},
        {"rule a :\n { condition: true }", 2, "expected a tag"},
        {"rule a {\n condition: true\n strings: $a = \"x\" }", 3, "expected '}'"},
        {"rule a {\n condition: 1 of ($z*) }", 2, "undefined string"},
        {"rule a { condition: true }\n\x01", 2, "unexpected character"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_rejects(bad[i].text, bad[i].line, bad[i].reason);
}

static void test_no_rules_is_an_error(void **state)
{
    (void)state;
    engine_diag diag;
    assert_int_equal(compile("// nothing here\n", &diag), ENGINE_ERULES);
    assert_non_null(strstr(diag.text, "no rules"));
    assert_int_equal(compile("\n include \"does-not-exist.yar\"", &diag), ENGINE_ENOENT);
    assert_non_null(strstr(diag.text, "t.yar:2: cannot include does-not-exist.yar"));
}

static void test_meta_tags_and_flags(void **state)
{
    (void)state;
    engine_diag diag;
    engine__ruleset set = {0};
    assert_int_equal(engine__rules_parse_text(&set,
                                              "rule n : x normalized { meta: k = \"v\\\"q\" "
                                              "n = 5 condition: true }\n"
                                              "rule m { meta: amsi_normalized = true strings: "
                                              "$a = \"ab\" $b = \"cd\" condition: $a or not $b }",
                                              "t.yar", &diag),
                     0);
    assert_int_equal(set.nrules, 2);
    assert_true(set.rules[0].normalized);
    assert_int_equal(set.rules[0].ntags, 2);
    assert_string_equal(set.rules[0].tags[1], "normalized");
    assert_string_equal(set.rules[0].meta[0].value, "v\"q");
    assert_string_equal(set.rules[0].meta[1].value, "5");
    assert_true(set.rules[1].normalized);
    /* `true` holds without hits; `$a or not $b` too. */
    assert_false(set.rules[0].hit_gated);
    assert_false(set.rules[1].hit_gated);
    assert_int_equal(set.rules[1].line, 2);
    engine__ruleset_cleanup(&set);
}

static void test_hit_gating(void **state)
{
    (void)state;
    static const struct {
        const char *cond;
        bool gated;
    } cases[] = {
        {"$a", true},
        {"$a and filesize < 10", true},
        {"$a or filesize < 10", false},
        {"not $a", false},
        {"#a > 0", true},
        {"#a >= 1", true},
        {"#a == 0", false},
        {"#a < 3", false},
        {"2 < #a", true},
        {"any of them", true},
        {"none of them", false},
        {"$a or $b", true},
        {"false", true},
        {"true", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "rule a { strings: $a = \"x1\" $b = \"x2\" condition: %s %s }",
                 cases[i].cond, strstr(cases[i].cond, "them") ? "" : "and ($a or $b or true)");
        engine__ruleset set = {0};
        engine_diag diag;
        int rc = engine__rules_parse_text(&set, text, "t.yar", &diag);
        if (rc != 0)
            fail_msg("%s: %s", text, diag.text);
        /* `and (... or true)` keeps every string referenced without changing gating. */
        if (set.rules[0].hit_gated != cases[i].gated)
            fail_msg("%s: hit_gated %d", cases[i].cond, set.rules[0].hit_gated);
        engine__ruleset_cleanup(&set);
    }
}

/* Which strings the gate of a rule's condition takes: the cheap ones, and no more than needed. */
static void test_gate_choice(void **state)
{
    (void)state;
    static const struct {
        const char *cond;
        const char *gate; /* ids of the marked strings, in order */
    } cases[] = {
        {"$a and $b", "b"},          {"$a or $b", "ab"},
        {"all of them", "b"},        {"any of them", "abcr"},
        {"2 of ($a, $b, $c)", "bc"}, {"3 of ($a, $b, $c)", "b"},
        {"#a > 2 and $c", "c"},      {"not $a and $c", "c"},
        {"#b == 0 and $a", "a"},     {"any of ($a, $c) and $b", "b"},
        {"$r and $a", "a"},          {"($a or $r) and ($b or $c)", "bc"},
        {"$a and false", ""},        {"4 of ($a, $b, $c)", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text),
                 "rule g { strings: $a = \"abc\" $b = \"net.webclient\" $c = \"downloadstring\" "
                 "$r = /ab+c/ condition: %s %s }",
                 cases[i].cond,
                 strstr(cases[i].cond, "them") ? "" : "and ($a or $b or $c or $r or true)");
        engine__ruleset set = {0};
        engine_diag diag;
        int rc = engine__rules_parse_text(&set, text, "t.yar", &diag);
        if (rc != 0)
            fail_msg("%s: %s", text, diag.text);
        assert_true(set.rules[0].hit_gated);
        bool mark[4] = {false};
        engine__gate_mark(&set, set.rules[0].root, mark);
        char got[8] = "";
        for (size_t j = 0; j < set.nstrings; j++)
            if (mark[j])
                strncat(got, set.strings[j].id, 1);
        if (strcmp(got, cases[i].gate) != 0)
            fail_msg("%s: gate [%s], expected [%s]", cases[i].cond, got, cases[i].gate);
        engine__ruleset_cleanup(&set);
    }
    /* `k of` a set too large to rank: every member (a gate still, only not the smallest). */
    char text[4096];
    size_t w = (size_t)snprintf(text, sizeof(text), "rule big { strings: ");
    for (int i = 0; i < 70; i++)
        w += (size_t)snprintf(text + w, sizeof(text) - w, "$s%d = \"word%d\" ", i, i);
    snprintf(text + w, sizeof(text) - w, "condition: 2 of them }");
    engine__ruleset set = {0};
    engine_diag diag;
    assert_int_equal(engine__rules_parse_text(&set, text, "t.yar", &diag), 0);
    bool mark[70] = {false};
    engine__gate_mark(&set, set.rules[0].root, mark);
    for (int i = 0; i < 70; i++)
        assert_true(mark[i]);
    engine__ruleset_cleanup(&set);
}

/* Writes text to dir/name. */
static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void remove_tree(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_includes_and_directories(void **state)
{
    (void)state;
    char dir[] = "/tmp/amsi-rules-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char sub[600];
    snprintf(sub, sizeof(sub), "%s/sub", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    write_file(dir, "a.yar", "include \"sub/inc.yar\"\nrule a { condition: true }\n");
    write_file(sub, "inc.yar", "include \"deeper.yar\"\nrule inc { condition: true }\n");
    write_file(sub, "deeper.yar", "rule deeper { condition: true }\n");
    write_file(dir, "b.yara", "rule b { condition: true }\n");
    write_file(dir, "ignored.txt", "not rules at all");

    const char *paths[] = {dir};
    engine_rules *rules = NULL;
    engine_diag diag;
    int rc = engine_rules_compile_files(paths, 1, NULL, &rules, &diag);
    if (rc != 0)
        fail_msg("%s", diag.text);
    assert_int_equal(engine_rules_count(rules), 4);
    assert_string_equal(engine_rules_name(rules, 0), "deeper");
    assert_string_equal(engine_rules_name(rules, 1), "inc");
    assert_string_equal(engine_rules_name(rules, 2), "a");
    assert_string_equal(engine_rules_name(rules, 3), "b");
    uint8_t h1[32], h2[32];
    engine_rules_hash(rules, h1);
    engine_rules_unref(rules);

    /* The hash follows the text of included files too. */
    write_file(sub, "deeper.yar", "rule deeper { condition: false }\n");
    assert_int_equal(engine_rules_compile_files(paths, 1, NULL, &rules, &diag), 0);
    engine_rules_hash(rules, h2);
    assert_memory_not_equal(h1, h2, 32);
    engine_rules_unref(rules);

    /* An error inside an included file names that file and line. */
    write_file(sub, "deeper.yar", "rule deeper {\n condition: nope }\n");
    assert_int_equal(engine_rules_compile_files(paths, 1, NULL, &rules, &diag), ENGINE_ERULES);
    assert_non_null(strstr(diag.text, "sub/deeper.yar:2: unknown identifier 'nope'"));

    /* Include cycles are refused. */
    write_file(sub, "deeper.yar", "include \"inc.yar\"\n");
    assert_int_equal(engine_rules_compile_files(paths, 1, NULL, &rules, &diag), ENGINE_ERULES);
    assert_non_null(strstr(diag.text, "include cycle"));
    remove_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_the_subset),
        cmocka_unit_test(test_rejects_outside_the_subset),
        cmocka_unit_test(test_no_rules_is_an_error),
        cmocka_unit_test(test_meta_tags_and_flags),
        cmocka_unit_test(test_hit_gating),
        cmocka_unit_test(test_gate_choice),
        cmocka_unit_test(test_includes_and_directories),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
