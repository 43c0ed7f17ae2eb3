// The tuned cuSPARSELt plans on disk (see plan_cache.h).
#include "cuda/plan_cache.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

namespace s24 {
namespace cuda {
namespace {

const char* kHeader = "# sparse24 tuned cuSPARSELt plans, v1: device driver cusparselt dtype m n k b_transposed "
                      "c_transposed -> form alg split_k split_k_mode split_k_buffers ms";

std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v == nullptr ? std::string() : std::string(v);
}

// mkdir -p; false if the directory cannot be made.
bool make_dirs(const std::string& path) {
    for (size_t i = 1; i <= path.size(); ++i) {
        if (i < path.size() && path[i] != '/') continue;
        const std::string part = path.substr(0, i);
        if (mkdir(part.c_str(), 0755) != 0 && errno != EEXIST) return false;
    }
    return true;
}

std::string directory_of(const std::string& path) { return path.substr(0, path.rfind('/')); }

// The choice's fields "<form> <alg> <split_k> <mode> <buffers> <ms>", parsed; false if malformed.
bool parse_choice(const std::string& fields, PlanChoice* out) {
    std::istringstream in(fields);
    std::string form, extra;
    PlanChoice c;
    if (!(in >> form >> c.config.id >> c.config.split_k >> c.config.split_k_mode >> c.config.split_k_buffers >> c.ms))
        return false;
    if (in >> extra) return false;
    if (form == form_name(SpmmForm::ROW_C)) c.form = SpmmForm::ROW_C;
    else if (form == form_name(SpmmForm::COL_C)) c.form = SpmmForm::COL_C;
    else if (form == form_name(SpmmForm::STRUCTURED_B)) c.form = SpmmForm::STRUCTURED_B;
    else return false;
    if (c.config.id < -1 || c.config.split_k < 0 || !(c.ms >= 0.0f)) return false;
    *out = c;
    return true;
}

}  // namespace

std::string SpmmRequest::describe() const {
    return std::string(" (") + (dtype == S24_BF16 ? "bf16" : dtype == S24_FP16 ? "fp16" : "fp32") +
           " m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) +
           " b_transposed=" + std::to_string((int)b_transposed) + " c_transposed=" + std::to_string((int)c_transposed) +
           ")";
}

PlanCache::PlanCache(const std::string& device, int driver, int cusparselt)
    : device_(device), driver_(driver), cusparselt_(cusparselt) {
    for (char& c : device_)
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') c = '_';
    if (env("SPARSE24_PLAN_CACHE") == "0") return;
    std::string dir = env("SPARSE24_CACHE_DIR");
    if (dir.empty()) {
        const std::string xdg = env("XDG_CACHE_HOME"), home = env("HOME");
        if (!xdg.empty()) dir = xdg + "/sparse24";
        else if (!home.empty()) dir = home + "/.cache/sparse24";
        else return;
    }
    path_ = dir + "/plans/cusparselt-plans.txt";
}

std::string PlanCache::key(const SpmmRequest& r) const {
    return device_ + " " + std::to_string(driver_) + " " + std::to_string(cusparselt_) + " " +
           (r.dtype == S24_BF16 ? "bf16" : "fp16") + " " + std::to_string(r.m) + " " + std::to_string(r.n) + " " +
           std::to_string(r.k) + " " + std::to_string((int)r.b_transposed) + " " + std::to_string((int)r.c_transposed);
}

std::map<std::string, std::string> PlanCache::read() const {
    std::map<std::string, std::string> lines;
    if (path_.empty()) return lines;
    std::ifstream in(path_);
    std::string line;
    while (std::getline(in, line)) {
        const size_t arrow = line.find(" -> ");
        if (line.empty() || line[0] == '#' || arrow == std::string::npos) continue;
        PlanChoice ignored;
        const std::string fields = line.substr(arrow + 4);
        if (parse_choice(fields, &ignored)) lines[line.substr(0, arrow)] = fields;
    }
    return lines;
}

bool PlanCache::find(const SpmmRequest& request, PlanChoice* choice) const {
    const auto lines = read();
    auto it = lines.find(key(request));
    return it != lines.end() && parse_choice(it->second, choice);
}

void PlanCache::store(const SpmmRequest& request, const PlanChoice& choice) const {
    if (path_.empty() || !make_dirs(directory_of(path_))) return;
    auto lines = read();
    char ms[32];
    std::snprintf(ms, sizeof ms, "%.4f", choice.ms);
    lines[key(request)] = std::string(form_name(choice.form)) + " " + std::to_string(choice.config.id) + " " +
                          std::to_string(choice.config.split_k) + " " + std::to_string(choice.config.split_k_mode) +
                          " " + std::to_string(choice.config.split_k_buffers) + " " + ms;
    static std::atomic<unsigned> counter{0};
    const std::string tmp = path_ + ".tmp." + std::to_string((long)getpid()) + "." + std::to_string(counter++);
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << kHeader << '\n';
        for (const auto& kv : lines) out << kv.first << " -> " << kv.second << '\n';
        out.flush();
        if (!out) {
            std::remove(tmp.c_str());
            return;
        }
    }
    if (std::rename(tmp.c_str(), path_.c_str()) != 0) std::remove(tmp.c_str());
}

void PlanCache::clear() const {
    if (!path_.empty()) std::remove(path_.c_str());
}

}  // namespace cuda
}  // namespace s24
