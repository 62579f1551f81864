/* builtin.h - the embedded default model (models/shammah-default.gguf, linked into the
 * binary when it is present at build time), so a fresh machine answers without a download.
 *
 * The engine maps model files, so the embedded bytes are written once to
 * SHAMMAH_HOME/models/shammah-default.gguf (via a temporary file and rename; rewritten when the
 * file there differs from this build's) and loaded from there like any other model. */
#ifndef SH_BUILTIN_H
#define SH_BUILTIN_H

#include <stddef.h>

#define BUILTIN_MODEL_NAME "shammah-default"

/* Bytes of the embedded model; 0 when this build has none. */
size_t builtin_model_size(void);

/* Ensures models_dir/shammah-default.gguf holds the embedded model (creating models_dir if
 * needed) and writes its path to path[0..cap). SH_ENOTFOUND when the build has no model. */
int builtin_model_extract(const char *models_dir, char *path, size_t cap);

#endif
