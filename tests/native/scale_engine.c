/* A small native engine for tests: copies SCENARIO records, multiplying each rate by
 * config "factor"; "mode": "segfault" makes run_chunk dereference NULL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "livecalc_engine.h"

typedef struct {
    uint32_t scenario_id;
    uint32_t year;
    double rate;
} scenario_t;

typedef struct {
    double factor;
    int segfault;
} engine_t;

void *lc_create(void) { return calloc(1, sizeof(engine_t)); }

int32_t lc_initialize(void *handle, const char *config_json, const char *am_url,
                      const char *am_token, const char *cache_dir, char *err, size_t err_len) {
    engine_t *e = (engine_t *)handle;
    const char *f = strstr(config_json, "\"factor\":");
    (void)am_url; (void)am_token; (void)cache_dir;
    if (f == NULL || sscanf(f + 9, "%lf", &e->factor) != 1) {
        snprintf(err, err_len, "config.factor: give a number");
        return 1;
    }
    e->segfault = strstr(config_json, "\"segfault\"") != NULL;
    return 0;
}

void lc_get_info(void *handle, lc_engine_info *info) {
    (void)handle;
    info->name = "Scale Engine";
    info->version = "1.0.0";
    info->engine_type = "scale";
    info->supports_assumptions_manager = 0;
    info->max_buffer_size = 0;
}

uint64_t lc_output_records(void *handle, uint64_t input_records) {
    (void)handle;
    return input_records;
}

int32_t lc_run_chunk(void *handle, const void *input, uint64_t input_size, void *output,
                     uint64_t output_size, lc_execution_result *result) {
    engine_t *e = (engine_t *)handle;
    const scenario_t *in = (const scenario_t *)input;
    scenario_t *out = (scenario_t *)output;
    uint64_t n = input_size / sizeof(scenario_t);
    if (e->segfault) {
        volatile int *p = NULL;
        *p = 1;
    }
    if (output_size < input_size) {
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
    result->bytes_written = n * sizeof(scenario_t);
    return 0;
}

void lc_dispose(void *handle) { free(handle); }
