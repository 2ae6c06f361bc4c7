/*
 * test_rulesub.c - the YARA-subset reader of amsibench's peers (bench/rulesub.c): strings and
 * modifiers, conditions evaluated on match counts, the ClamAV and Hyperscan forms, the bundled
 * rules read whole, and files it must refuse.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "rulesub.h"

/* Writes text to a temporary file and reads it; returns rulesub_load's result. */
static int load_text(rulesub *rs, const char *text)
{
    char path[] = "/tmp/test_rulesub.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    int rc = rulesub_load(rs, path);
    unlink(path);
    return rc;
}

static const char sample[] =
    "/* a comment with rule inside */\n"
    "rule Two_Of : tag1 tag2\n{\n"
    "    meta:\n        description = \"has } and // in it\"\n        score = 5\n"
    "    strings:\n"
    "        $a = \"Invoke-Thing\" nocase\n"
    "        $b = \"tab\\there \\\"q\\\" \\x41\" ascii wide fullword\n"
    "        $h = { 4D 5A ?? [2-4] ( 90 | 91 ) ?A }\n"
    "        $r = /evil[0-9]{2}\\/x/is // trailing comment\n"
    "    condition:\n        2 of ($a, $b, $h*) or (#r >= 3 and not $a)\n}\n"
    "rule All { strings: $x = \"x1\" $y = \"y2\" condition: all of them }\n"
    "rule Size { strings: $x = \"x1\" condition: $x and filesize < 100 }\n";

static void test_strings_and_modifiers(void **state)
{
    (void)state;
    rulesub rs;
    assert_int_equal(load_text(&rs, sample), 0);
    assert_int_equal(rs.n, 3);
    const rulesub_rule *r = &rs.rules[0];
    assert_string_equal(r->name, "Two_Of");
    assert_int_equal(r->nstrings, 4);
    assert_string_equal(r->strings[0].id, "a");
    assert_true(r->strings[0].nocase && r->strings[0].ascii && !r->strings[0].wide);
    assert_int_equal(r->strings[1].len, strlen("tab\there \"q\" A"));
    assert_memory_equal(r->strings[1].bytes, "tab\there \"q\" A", r->strings[1].len);
    assert_true(r->strings[1].ascii && r->strings[1].wide && r->strings[1].fullword);
    assert_int_equal(r->strings[2].kind, RULESUB_HEX);
    assert_int_equal(r->strings[3].kind, RULESUB_REGEX);
    assert_string_equal((const char *)r->strings[3].bytes, "evil[0-9]{2}\\/x");
    assert_true(r->strings[3].nocase && r->strings[3].dotall);
    assert_true(r->cond_ok);
    assert_true(rs.rules[1].cond_ok);
    assert_false(rs.rules[2].cond_ok); /* filesize is outside the subset */
    rulesub_cleanup(&rs);
}

static void test_conditions(void **state)
{
    (void)state;
    rulesub rs;
    assert_int_equal(load_text(&rs, sample), 0);
    const rulesub_rule *r = &rs.rules[0];
    uint32_t none[4] = {0}, a_b[4] = {1, 1, 0, 0}, a_only[4] = {1, 0, 0, 0}, r3[4] = {0, 0, 0, 3},
             r3a[4] = {1, 0, 0, 3}, r2[4] = {0, 0, 0, 2};
    assert_false(rulesub_eval(r, none));
    assert_true(rulesub_eval(r, a_b));
    assert_false(rulesub_eval(r, a_only));
    assert_true(rulesub_eval(r, r3));
    assert_false(rulesub_eval(r, r3a));
    assert_false(rulesub_eval(r, r2));
    uint32_t x[2] = {1, 0}, xy[2] = {1, 1};
    assert_false(rulesub_eval(&rs.rules[1], x));
    assert_true(rulesub_eval(&rs.rules[1], xy));
    assert_false(rulesub_eval(&rs.rules[2], x));
    rulesub_cleanup(&rs);
}

static void test_output_forms(void **state)
{
    (void)state;
    rulesub rs;
    assert_int_equal(load_text(&rs, sample), 0);
    char buf[1024];
    unsigned flags;
    /* A regex and `not` have no ClamAV form here; a rule of text strings has. */
    assert_int_equal(rulesub_to_ldb(&rs.rules[0], buf, sizeof(buf)), -1);
    assert_int_equal(rulesub_to_ldb(&rs.rules[1], buf, sizeof(buf)), 0);
    assert_string_equal(buf, "All;Engine:81-255,Target:0;(0&1);7831;7932");
    assert_int_equal(rulesub_to_ldb(&rs.rules[2], buf, sizeof(buf)), -1);
    assert_int_equal(rulesub_to_ldb(&rs.rules[1], buf, 10), -1);

    const rulesub_rule *r = &rs.rules[0];
    assert_int_equal(rulesub_to_hs(&r->strings[0], false, buf, sizeof(buf), &flags), 0);
    assert_string_equal(buf, "\\x49\\x6e\\x76\\x6f\\x6b\\x65\\x2d\\x54\\x68\\x69\\x6e\\x67");
    assert_int_equal(flags, 1u); /* caseless */
    assert_int_equal(rulesub_to_hs(&r->strings[1], true, buf, sizeof(buf), &flags), 0);
    assert_int_equal(strncmp(buf, "\\x74\\x00\\x61\\x00", 16), 0);
    assert_int_equal(rulesub_to_hs(&r->strings[2], false, buf, sizeof(buf), &flags), 0);
    assert_string_equal(buf, "\\x4d\\x5a..{2,4}(?:\\x90|\\x91)[\\x0a\\x1a\\x2a\\x3a\\x4a\\x5a\\x6a"
                             "\\x7a\\x8a\\x9a\\xaa\\xba\\xca\\xda\\xea\\xfa]");
    assert_int_equal(flags, 2u); /* dotall */
    assert_int_equal(rulesub_to_hs(&r->strings[3], false, buf, sizeof(buf), &flags), 0);
    assert_string_equal(buf, "evil[0-9]{2}\\/x");
    assert_int_equal(flags, 3u);
    rulesub_cleanup(&rs);
}

/* The bundled rules are read whole, every condition inside the subset. */
static void test_bundled_rules(void **state)
{
    (void)state;
    rulesub rs;
    assert_int_equal(rulesub_load(&rs, AMSI_SOURCE_DIR "/engine/rules/default.yar"), 0);
    assert_true(rs.n >= 40);
    char buf[65536];
    size_t ldb = 0;
    for (size_t i = 0; i < rs.n; i++) {
        assert_true(rs.rules[i].cond_ok);
        assert_true(rs.rules[i].nstrings > 0);
        ldb += rulesub_to_ldb(&rs.rules[i], buf, sizeof(buf)) == 0;
    }
    assert_true(ldb > 0 && ldb < rs.n);
    assert_string_equal(rs.rules[0].name, "EICAR_Test_File");
    assert_int_equal(rulesub_to_ldb(&rs.rules[0], buf, sizeof(buf)), 0);
    assert_int_equal(strncmp(buf, "EICAR_Test_File;Engine:81-255,Target:0;0;58354f21", 48), 0);
    rulesub_cleanup(&rs);
}

static void test_refusals(void **state)
{
    (void)state;
    rulesub rs;
    assert_int_equal(rulesub_load(&rs, "/nonexistent/rules.yar"), -1);
    assert_int_equal(load_text(&rs, "rule Bad { strings: $a = \"open condition: $a }"), -1);
    assert_int_equal(load_text(&rs, "rule Bad { strings: $a = \"x\" xor condition: $a }"), -1);
    assert_int_equal(load_text(&rs, "rule Bad { condition: $nosuch }"), 0);
    assert_false(rs.rules[0].cond_ok);
    rulesub_cleanup(&rs);
    assert_int_equal(load_text(&rs, ""), 0);
    assert_int_equal(rs.n, 0);
    rulesub_cleanup(&rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strings_and_modifiers),
        cmocka_unit_test(test_conditions),
        cmocka_unit_test(test_output_forms),
        cmocka_unit_test(test_bundled_rules),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
