/* The C ABI of a LiveCalc native engine.
 *
 * A shared library that exports these functions can be used as an engine of type "native"
 * (config: {"library": "path/to/libengine.so", "output_type": "result", ...}). Every buffer is
 * 16-byte aligned and holds records (POLICY, POLICY_EXT, SCENARIO, RESULT, RESULT_DETAIL,
 * SCENARIO_TOTAL) laid out byte by byte as docs/data.md, "Record layouts, byte by byte", gives
 * them: little-endian, no padding between records. For example SCENARIO, 16 bytes:
 *     typedef struct { uint32_t scenario_id; uint32_t year; double rate; } lc_scenario;
 * All functions are called from one thread at a time per handle; ctypes releases the GIL
 * around each call. A complete engine and pipeline: examples/native/, docs/native.md.
 */
#ifndef LIVECALC_ENGINE_H
#define LIVECALC_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#define LC_ERROR_LEN 512

typedef struct {
    const char *name;
    const char *version;
    const char *engine_type;
    int32_t supports_assumptions_manager;
    uint64_t max_buffer_size;
} lc_engine_info;

typedef struct {
    int32_t success;          /* 1 success, 0 failure (error_message says why) */
    double execution_time_ms; /* may be left 0: the host measures it */
    uint64_t rows_processed;
    uint64_t bytes_written;   /* output records written from offset 0, in bytes */
    char error_message[LC_ERROR_LEN];
} lc_execution_result;

/* A new engine instance; NULL on failure. */
void *lc_create(void);

/* 0 on success; otherwise writes a message into err (err_len bytes, NUL-terminated).
 * config_json is the node's config as JSON; am_* may be NULL when no credentials. */
int32_t lc_initialize(void *handle, const char *config_json, const char *am_url,
                      const char *am_token, const char *cache_dir, char *err, size_t err_len);

void lc_get_info(void *handle, lc_engine_info *info);

/* Output records needed for input_records input records. */
uint64_t lc_output_records(void *handle, uint64_t input_records);

int32_t lc_run_chunk(void *handle, const void *input, uint64_t input_size, void *output,
                     uint64_t output_size, lc_execution_result *result);

/* Frees the instance; the handle is invalid afterwards. Never fails. */
void lc_dispose(void *handle);

#endif
