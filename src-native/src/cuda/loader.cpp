// Run-time loading of cuSPARSELt and cuBLASLt (see loader.h for the search order).
#include "cuda/loader.h"

#include "backend.h"

#include <dlfcn.h>
#include <glob.h>
#include <link.h>
#include <sys/stat.h>

#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace s24 {
namespace cuda {
namespace {

// Oldest cuSPARSELt whose ABI matches the headers we compile against (4-argument
// cusparseLtMatmulPlanInit, CUSPARSE_COMPUTE_32F == 2, plan-based compression with a buffer).
constexpr int kMinCusparseLtVersion = 600;  // 0.6.0

struct LibrarySpec {
    const char* pretty;   // "cuSPARSELt"
    const char* soname;   // "libcusparseLt.so.0"
    const char* env_var;  // "SPARSE24_CUSPARSELT_PATH"
};

const char* const kSiteSubdirs[] = {"nvidia/cusparselt/lib", "nvidia/cu13/lib"};

std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v != nullptr ? std::string(v) : std::string();
}

bool is_directory(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::vector<std::string> glob_files(const std::string& pattern) {
    std::vector<std::string> out;
    glob_t g;
    if (::glob(pattern.c_str(), 0, nullptr, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);  // glob sorts by default
    }
    ::globfree(&g);
    return out;
}

std::string loaded_path(void* lib, const std::string& fallback) {
    struct link_map* map = nullptr;
    if (::dlinfo(lib, RTLD_DI_LINKMAP, &map) == 0 && map != nullptr && map->l_name != nullptr &&
        map->l_name[0] != '\0')
        return map->l_name;
    return fallback;
}

// One attempt at a candidate: opens it, resolves the table, checks the version. On failure the
// library is closed again and `why` says what went wrong.
template <class Api, class Resolve, class Check>
bool try_candidate(const std::string& candidate, Api& api, Resolve resolve, Check check, std::string& why) {
    (void)::dlerror();
    void* lib = ::dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
        const char* e = ::dlerror();
        why = e != nullptr ? e : "dlopen failed";
        return false;
    }
    Api table;
    std::string missing;
    if (!resolve(lib, table, missing)) {
        why = "lacks symbol " + missing;
        ::dlclose(lib);
        return false;
    }
    if (!check(table, why)) {
        ::dlclose(lib);
        return false;
    }
    table.path = loaded_path(lib, candidate);
    api = std::move(table);  // the handle stays open for the life of the process
    return true;
}

// Runs the search; returns true with `api` filled, or false with the message.
template <class Api, class Resolve, class Check>
bool search(const LibrarySpec& spec, Api& api, Resolve resolve, Check check, std::string& message) {
    std::vector<std::string> searched;  // every path or pattern tried, with the reason where it failed
    auto attempt = [&](const std::string& candidate) -> bool {
        std::string why;
        if (try_candidate(candidate, api, resolve, check, why)) return true;
        searched.push_back(candidate + " (" + why + ")");
        return false;
    };
    const std::string soname = spec.soname;

    // 1. explicit override: a file or a directory holding it
    const std::string override_path = env(spec.env_var);
    if (!override_path.empty()) {
        const std::string candidate = is_directory(override_path) ? override_path + "/" + soname : override_path;
        if (attempt(candidate)) return true;
    }
    // 2. the soname through the dynamic linker's own search
    if (attempt(soname)) return true;
    // 3. Python site-packages (NVIDIA's pip wheels)
    std::vector<std::string> sites;
    const std::string python_site = env("SPARSE24_PYTHON_SITE");
    if (!python_site.empty()) sites.push_back(python_site);
    const std::string venv = env("VIRTUAL_ENV");
    if (!venv.empty()) sites.push_back(venv + "/lib/python3*/site-packages");
    const std::string conda = env("CONDA_PREFIX");
    if (!conda.empty()) sites.push_back(conda + "/lib/python3*/site-packages");
    for (const char* prefix : {"/usr/local/lib", "/usr/lib"}) {
        sites.push_back(std::string(prefix) + "/python3*/site-packages");
        sites.push_back(std::string(prefix) + "/python3*/dist-packages");
    }
    const std::string home = env("HOME");
    if (!home.empty()) sites.push_back(home + "/.local/lib/python3*/site-packages");
    sites.push_back("/opt/*/lib/python3*/site-packages");
    sites.push_back("/opt/*/*/lib/python3*/site-packages");
    sites.push_back("/opt/*/*/*/lib/python3*/site-packages");
    sites.push_back("/opt/*/.venv/lib/python3*/site-packages");  // glob's * skips dot-directories
    sites.push_back("/opt/*/venv/lib/python3*/site-packages");
    for (const std::string& site : sites) {
        bool any = false;  // a site where no sub-directory holds the file is listed once, compactly
        for (const char* sub : kSiteSubdirs) {
            std::vector<std::string> files = glob_files(site + "/" + sub + "/" + soname);
            any = any || !files.empty();
            for (const std::string& f : files)
                if (attempt(f)) return true;
        }
        if (!any) {
            std::string subs;
            for (const char* sub : kSiteSubdirs) subs += (subs.empty() ? "" : ",") + std::string(sub);
            searched.push_back(site + "/{" + subs + "}/" + soname);
        }
    }
    // 4. the usual system locations
    for (const char* dir : {"/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib",
                            "/usr/lib/x86_64-linux-gnu"}) {
        const std::string candidate = std::string(dir) + "/" + soname;
        struct stat st;
        if (::stat(candidate.c_str(), &st) != 0) {
            searched.push_back(candidate);
            continue;
        }
        if (attempt(candidate)) return true;
    }

    message = std::string(spec.pretty) + " (" + soname + ") not found; searched: ";
    for (size_t i = 0; i < searched.size(); ++i) message += (i ? ", " : "") + searched[i];
    message += std::string("; set ") + spec.env_var + " to the file or its directory";
    return false;
}

template <class Fn>
bool fetch(void* lib, const char* name, Fn& fn, std::string& missing) {
    void* sym = ::dlsym(lib, name);
    if (sym == nullptr) {
        if (missing.empty()) missing = name;
        return false;
    }
    fn = reinterpret_cast<Fn>(sym);
    return true;
}

bool resolve_cusparselt(void* lib, CusparseLtApi& api, std::string& missing) {
    bool ok = true;
#define S24_FETCH(name) ok = fetch(lib, #name, api.name, missing) && ok;
    S24_CUSPARSELT_FUNCTIONS(S24_FETCH)
#undef S24_FETCH
    return ok;
}

bool check_cusparselt(CusparseLtApi& api, std::string& why) {
    int major = 0, minor = 0, patch = 0;
    if (api.cusparseLtGetProperty(MAJOR_VERSION, &major) != CUSPARSE_STATUS_SUCCESS ||
        api.cusparseLtGetProperty(MINOR_VERSION, &minor) != CUSPARSE_STATUS_SUCCESS ||
        api.cusparseLtGetProperty(PATCH_LEVEL, &patch) != CUSPARSE_STATUS_SUCCESS) {
        why = "cusparseLtGetProperty failed";
        return false;
    }
    api.version = major * 1000 + minor * 100 + patch;
    if (api.version < kMinCusparseLtVersion) {
        why = "version " + std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch) +
              " is older than the 0.6.0 needed";
        return false;
    }
    return true;
}

bool resolve_cublaslt(void* lib, CublasLtApi& api, std::string& missing) {
    bool ok = true;
#define S24_FETCH(name) ok = fetch(lib, #name, api.name, missing) && ok;
    S24_CUBLASLT_FUNCTIONS(S24_FETCH)
#undef S24_FETCH
    return ok;
}

bool check_cublaslt(CublasLtApi& api, std::string& /*why*/) {
    api.version = (int)api.cublasLtGetVersion();
    return true;
}

template <class Api, class Resolve, class Check>
const Api& load_once(const LibrarySpec& spec, Resolve resolve, Check check) {
    static std::mutex lock;
    // Set once and never freed (like the library it points into), so that it outlives every context,
    // even one destroyed during static destruction at exit.
    static Api* loaded = nullptr;
    std::lock_guard<std::mutex> hold(lock);
    if (loaded != nullptr) return *loaded;
    auto api = std::make_unique<Api>();
    std::string message;
    if (!search(spec, *api, resolve, check, message)) fail(S24_ERROR_LIBRARY_NOT_FOUND, message);
    loaded = api.release();
    return *loaded;
}

}  // namespace

void require_driver() {
    static std::once_flag once;
    static std::string missing;  // "" when the driver loaded (it then stays loaded, as the runtime uses it)
    std::call_once(once, [] {
        (void)::dlerror();
        if (::dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL) == nullptr) {
            const char* e = ::dlerror();
            missing = e != nullptr ? e : "dlopen failed";
        }
    });
    if (!missing.empty()) fail(S24_ERROR_BACKEND_UNAVAILABLE, "no NVIDIA driver (libcuda.so.1 not found: " + missing + ")");
}

const CusparseLtApi& cusparselt_api() {
    static const LibrarySpec spec{"cuSPARSELt", "libcusparseLt.so.0", "SPARSE24_CUSPARSELT_PATH"};
    return load_once<CusparseLtApi>(spec, resolve_cusparselt, check_cusparselt);
}

const CublasLtApi& cublaslt_api() {
    static const LibrarySpec spec{"cuBLASLt", "libcublasLt.so.13", "SPARSE24_CUBLASLT_PATH"};
    return load_once<CublasLtApi>(spec, resolve_cublaslt, check_cublaslt);
}

}  // namespace cuda
}  // namespace s24
