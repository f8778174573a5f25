/*
 * Turns the raw figures of a peer benchmark run into its table and CSV.
 *
 *   peers_report RAW FACTS CSV
 *
 * RAW has lines "round,system,figure,value" (one per figure a load
 * generator printed); FACTS has lines "name: value" about the machine. For
 * each figure and system the median over the rounds is taken; zks' ratio is
 * to the best of the peers (the highest for a rate, the lowest for a time or
 * a size). The table goes to standard output as Markdown, the CSV to CSV.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROUNDS 64

enum better { HIGHER, LOWER };

static const struct figure {
    const char *key, *label, *unit;
    enum better better;
    int decimals;
} figures[] = {
    {"pub_1", "acknowledged publishes/s, 1 publisher", "msg/s", HIGHER, 0},
    {"pub_8", "acknowledged publishes/s, 8 publishers", "msg/s", HIGHER, 0},
    {"pub_64", "acknowledged publishes/s, 64 publishers", "msg/s", HIGHER, 0},
    {"lat_p50", "publish -> subscriber latency p50", "ms", LOWER, 3},
    {"lat_p99", "publish -> subscriber latency p99", "ms", LOWER, 3},
    {"lat_p999", "publish -> subscriber latency p999", "ms", LOWER, 3},
    {"catchup_msgs", "catch-up of 100,000 buffered messages", "msg/s", HIGHER, 0},
    {"catchup_mbs", "catch-up of 100,000 buffered messages", "MB/s", HIGHER, 1},
    {"idle_rss", "server RSS with 1,000 idle connections", "MB", LOWER, 1},
    {"idle_kib", "server memory per idle connection", "KiB", LOWER, 1},
};
#define NFIG (sizeof figures / sizeof figures[0])

static const char *const systems[] = {"zks", "mosquitto", "nats"};
#define NSYS 3

static double values[NFIG][NSYS][MAX_ROUNDS];
static int counts[NFIG][NSYS];

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of what was measured, or -1 when nothing was. */
static double median(int f, int s)
{
    int n = counts[f][s];
    if (n == 0)
        return -1;
    double v[MAX_ROUNDS];
    memcpy(v, values[f][s], (size_t)n * sizeof v[0]);
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void fmt(char *out, size_t cap, double v, int decimals)
{
    if (v < 0) {
        snprintf(out, cap, "-");
        return;
    }
    if (decimals > 0) {
        snprintf(out, cap, "%.*f", decimals, v);
        return;
    }
    /* Whole numbers with thousands separators. */
    char digits[32];
    snprintf(digits, sizeof digits, "%.0f", v);
    size_t n = strlen(digits), o = 0;
    for (size_t i = 0; i < n && o + 2 < cap; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = '\0';
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: peers_report RAW FACTS CSV\n");
        return 2;
    }
    FILE *raw = fopen(argv[1], "r");
    if (raw == NULL) {
        fprintf(stderr, "peers_report: cannot read %s\n", argv[1]);
        return 1;
    }
    char line[512];
    int rounds = 0;
    while (fgets(line, sizeof line, raw)) {
        int round;
        char sys[32], fig[32];
        double v;
        if (sscanf(line, "%d,%31[^,],%31[^,],%lf", &round, sys, fig, &v) != 4)
            continue;
        if (round > rounds)
            rounds = round;
        for (size_t f = 0; f < NFIG; f++)
            for (int s = 0; s < NSYS; s++)
                if (strcmp(fig, figures[f].key) == 0 && strcmp(sys, systems[s]) == 0 &&
                    counts[f][s] < MAX_ROUNDS)
                    values[f][s][counts[f][s]++] = v;
    }
    fclose(raw);

    FILE *csv = fopen(argv[3], "w");
    if (csv == NULL) {
        fprintf(stderr, "peers_report: cannot write %s\n", argv[3]);
        return 1;
    }
    FILE *facts = fopen(argv[2], "r");
    printf("Machine:");
    while (facts && fgets(line, sizeof line, facts)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '\0')
            continue;
        printf("\n  %s", line);
        fprintf(csv, "# %s\n", line);
    }
    if (facts)
        fclose(facts);
    printf("\nMedians of %d round%s; zks' ratio is to the best peer.\n\n", rounds,
           rounds == 1 ? "" : "s");
    fprintf(csv, "# medians of %d rounds\n", rounds);
    fprintf(csv, "figure,unit,better,zks,mosquitto,nats,best_peer,zks_ratio,zks_meets_target\n");
    printf("| figure | unit | zks | mosquitto (MQTT) | NATS JetStream | zks ÷ best peer |\n");
    printf("|---|---|---|---|---|---|\n");
    for (size_t f = 0; f < NFIG; f++) {
        const struct figure *fg = &figures[f];
        double m[NSYS];
        for (int s = 0; s < NSYS; s++)
            m[s] = median((int)f, s);
        double best = -1;
        for (int s = 1; s < NSYS; s++)
            if (m[s] >= 0 && (best < 0 || (fg->better == HIGHER ? m[s] > best : m[s] < best)))
                best = m[s];
        double ratio = m[0] >= 0 && best > 0 ? m[0] / best : -1;
        int meets = ratio >= 0 && (fg->better == HIGHER ? ratio >= 1.0 : ratio <= 1.0);
        char cell[NSYS][32], rcell[48];
        for (int s = 0; s < NSYS; s++)
            fmt(cell[s], sizeof cell[s], m[s], fg->decimals);
        if (ratio < 0)
            snprintf(rcell, sizeof rcell, "-");
        else
            snprintf(rcell, sizeof rcell, "%.2f×%s", ratio, meets ? "" : " (short)");
        printf("| %s | %s | %s | %s | %s | %s |\n", fg->label, fg->unit, cell[0], cell[1], cell[2],
               rcell);
        fprintf(csv, "%s,%s,%s", fg->key, fg->unit, fg->better == HIGHER ? "higher" : "lower");
        for (int s = 0; s < NSYS; s++)
            fprintf(csv, m[s] >= 0 ? ",%.6g" : ",", m[s]);
        fprintf(csv, best >= 0 ? ",%.6g" : ",", best);
        fprintf(csv, ratio >= 0 ? ",%.4f" : ",", ratio);
        fprintf(csv, ",%s\n", ratio < 0 ? "" : meets ? "yes" : "no");
    }
    fclose(csv);
    printf("\nCSV: %s\n", argv[3]);
    return 0;
}
