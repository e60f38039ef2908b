/* Run a hanzoo model (model.ort or model.onnx) from C through ONNX Runtime's C API, as an app embeds it.

   hanzoo_run MODEL INPUT ROWS OUTPUT

   INPUT holds ROWS samples as raw little-endian values: float32 features [ROWS, n_in], or uint8
   pixels [ROWS, 32, 32, 3] for an image model (the model's input type decides). OUTPUT receives the
   graph's "output" tensor [ROWS, n_out] as raw float32. Exit status 0 on success, 1 with one line on
   stderr otherwise. Build: cc -std=c11 -I<dir of onnxruntime_c_api.h> hanzoo_run.c -lonnxruntime */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnxruntime_c_api.h"

static const OrtApi *ort;

static int fail(const char *what, const char *detail) {
  fprintf(stderr, "hanzoo_run: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  return 1;
}

/* One ORT call: on failure, say which and why, and stop. */
#define CHECK(expr)                                                        \
  do {                                                                     \
    OrtStatus *status_ = (expr);                                           \
    if (status_) {                                                         \
      fail(#expr, ort->GetErrorMessage(status_));                          \
      ort->ReleaseStatus(status_);                                         \
      exit(1);                                                             \
    }                                                                      \
  } while (0)

/* The whole file, refused unless it holds exactly `want` bytes (never read past its end). */
static void *read_exact(const char *path, size_t want) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fail(path, strerror(errno));
    return NULL;
  }
  if (fseek(f, 0, SEEK_END) != 0) {
    fclose(f);
    fail(path, "cannot seek");
    return NULL;
  }
  long size = ftell(f);
  rewind(f);
  if (size < 0 || (size_t)size != want) {
    char msg[160];
    snprintf(msg, sizeof msg, "holds %ld bytes; %zu expected for these rows", size, want);
    fclose(f);
    fail(path, msg);
    return NULL;
  }
  void *data = malloc(want ? want : 1);
  if (!data || fread(data, 1, want, f) != want) {
    fclose(f);
    free(data);
    fail(path, "short read");
    return NULL;
  }
  fclose(f);
  return data;
}

int main(int argc, char **argv) {
  if (argc != 5) return fail("usage", "hanzoo_run MODEL INPUT ROWS OUTPUT");
  char *end;
  long long rows = strtoll(argv[3], &end, 10);
  if (*end || rows < 1 || rows > (1LL << 24)) return fail("ROWS must be a positive integer", argv[3]);

  FILE *model = fopen(argv[1], "rb");  /* named here: ORT's own message for a missing .ort file does not */
  if (!model) return fail(argv[1], strerror(errno));
  fclose(model);

  ort = OrtGetApiBase()->GetApi(ORT_API_VERSION);  /* the header's API version; newer libraries serve it */
  if (!ort) return fail("this libonnxruntime does not serve the header's API version", NULL);

  OrtEnv *env;
  CHECK(ort->CreateEnv(ORT_LOGGING_LEVEL_ERROR, "hanzoo", &env));
  OrtSessionOptions *opts;
  CHECK(ort->CreateSessionOptions(&opts));
  CHECK(ort->SetIntraOpNumThreads(opts, 1));  /* one core, as a phone app pins it */
  OrtSession *session;
  CHECK(ort->CreateSession(env, argv[1], opts, &session));

  /* The input's element type and per-sample shape, from the model itself. */
  OrtTypeInfo *type;
  CHECK(ort->SessionGetInputTypeInfo(session, 0, &type));
  const OrtTensorTypeAndShapeInfo *info;
  CHECK(ort->CastTypeInfoToTensorInfo(type, &info));
  ONNXTensorElementDataType elem;
  CHECK(ort->GetTensorElementType(info, &elem));
  size_t ndim;
  CHECK(ort->GetDimensionsCount(info, &ndim));
  if (ndim < 2 || ndim > 4) return fail("unexpected input rank", NULL);
  int64_t dims[4];
  CHECK(ort->GetDimensions(info, dims, ndim));
  ort->ReleaseTypeInfo(type);
  dims[0] = rows;  /* the batch dimension is dynamic */
  size_t per_row = 1;
  for (size_t i = 1; i < ndim; i++) per_row *= (size_t)dims[i];
  size_t width = elem == ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 ? 1 : 4;
  if (elem != ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 && elem != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
    return fail("the model's input is neither float32 nor uint8", NULL);
  size_t in_bytes = (size_t)rows * per_row * width;
  void *input = read_exact(argv[2], in_bytes);
  if (!input) return 1;

  OrtMemoryInfo *memory;
  CHECK(ort->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &memory));
  OrtValue *x = NULL;
  CHECK(ort->CreateTensorWithDataAsOrtValue(memory, input, in_bytes, dims, ndim, elem, &x));
  const char *in_names[] = {"input"}, *out_names[] = {"output"};
  OrtValue *y = NULL;
  CHECK(ort->Run(session, NULL, in_names, (const OrtValue *const *)&x, 1, out_names, 1, &y));

  OrtTensorTypeAndShapeInfo *out_info;
  CHECK(ort->GetTensorTypeAndShape(y, &out_info));
  size_t count;
  CHECK(ort->GetTensorShapeElementCount(out_info, &count));
  ort->ReleaseTensorTypeAndShapeInfo(out_info);
  float *out;
  CHECK(ort->GetTensorMutableData(y, (void **)&out));

  /* written under a temporary name, then renamed: a failed write never leaves half a file */
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", argv[4]) >= (int)sizeof tmp) return fail(argv[4], "path too long");
  FILE *f = fopen(tmp, "wb");
  if (!f) return fail(argv[4], strerror(errno));
  int bad = fwrite(out, sizeof(float), count, f) != count;
  bad |= fclose(f) != 0;
  if (bad || rename(tmp, argv[4]) != 0) {
    remove(tmp);
    return fail(argv[4], "write failed");
  }

  ort->ReleaseValue(y);
  ort->ReleaseValue(x);
  ort->ReleaseMemoryInfo(memory);
  ort->ReleaseSession(session);
  ort->ReleaseSessionOptions(opts);
  ort->ReleaseEnv(env);
  free(input);
  return 0;
}
