/* A complete LiveCalc native engine: a rate stress.
 *
 * It reads SCENARIO records (docs/data.md: 16 bytes, scenario_id u32 at 0, year u32 at 4,
 * rate f64 at 8) and writes the same records with every rate multiplied by the config's
 * "factor" (1.1 = rates 10% higher). Config: {"library": ..., "output_type": "scenario",
 * "factor": 1.1}; LiveCalc reads "library" and "output_type", this file reads "factor".
 *
 * Build (from the repository root; docs/native.md):
 *   mkdir -p examples/native/build
 *   cc -shared -fPIC -O2 -I src/livecalc/include examples/native/scale_rates.c \
 *      -o examples/native/build/libscale.so
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "livecalc_engine.h"

/* The SCENARIO record, byte for byte (docs/data.md, "Record layouts"). */
typedef struct {
    uint32_t scenario_id;
    uint32_t year;
    double rate;
} lc_scenario;

typedef struct {
    double factor;
} scale_engine;

void *lc_create(void) { return calloc(1, sizeof(scale_engine)); }

int32_t lc_initialize(void *handle, const char *config_json, const char *am_url,
                      const char *am_token, const char *cache_dir, char *err, size_t err_len) {
    scale_engine *e = (scale_engine *)handle;
    /* A real engine would use a JSON parser; this one looks for "factor": <number>. */
    const char *f = strstr(config_json, "\"factor\":");
    (void)am_url;
    (void)am_token;
    (void)cache_dir;
    if (f == NULL || sscanf(f + strlen("\"factor\":"), "%lf", &e->factor) != 1 ||
        !isfinite(e->factor) || e->factor < 0.0) {
        snprintf(err, err_len, "config.factor: give a finite number >= 0, e.g. 1.1");
        return 1;
    }
    return 0;
}

void lc_get_info(void *handle, lc_engine_info *info) {
    (void)handle;
    info->name = "Rate stress";
    info->version = "1.0.0";
    info->engine_type = "scale";
    info->supports_assumptions_manager = 0;
    info->max_buffer_size = 0;
}

uint64_t lc_output_records(void *handle, uint64_t input_records) {
    (void)handle;
    return input_records; /* one output record per input record */
}

int32_t lc_run_chunk(void *handle, const void *input, uint64_t input_size, void *output,
                     uint64_t output_size, lc_execution_result *result) {
    const scale_engine *e = (const scale_engine *)handle;
    const lc_scenario *in = (const lc_scenario *)input;
    lc_scenario *out = (lc_scenario *)output;
    uint64_t n = input_size / sizeof(lc_scenario);
    if (output_size < n * sizeof(lc_scenario)) {
        result->success = 0;
        snprintf(result->error_message, LC_ERROR_LEN, "output buffer too small");
        return 1;
    }
    for (uint64_t i = 0; i < n; i++) {
        out[i] = in[i];
        out[i].rate = in[i].rate * e->factor;
    }
    result->success = 1;
    result->rows_processed = n;
    result->bytes_written = n * sizeof(lc_scenario);
    return 0;
}

void lc_dispose(void *handle) { free(handle); }
