// SPDX-License-Identifier: GPL-3.0-or-later
//
// Flamenco 3 job type: stylize rendered frames with Neural Textures, in chunks, on the farm.
//
// Install: copy this file into the `scripts/` folder next to the `flamenco-manager` executable
// (create the folder if needed) and restart the Manager; the job type appears as
// "Neural Textures: Stylize Frames". Each task runs the core's chunk command
//
//   {python} -c <launcher> {core_dir} style apply --style S --input IN --out OUT --frames START-END --warmup W
//
// through the worker's `exec` command (arguments are passed as a list, never through a shell, so
// paths with spaces or quotes arrive intact). A chunk starts cold W frames before START and throws
// those frames away, so the chunks are independent: any worker can take any chunk, in any order.
// Assumes shared storage: every worker sees the frames, the style and the output folder at the same
// paths (use Flamenco's two-way variables for per-platform paths). Define in flamenco-manager.yaml:
//   neural_textures_python: the worker's Python with torch, numpy, safetensors, pillow, openexr
//   neural_textures_core:   the folder that holds `core/` (the installed extension's folder, or a checkout)

const JOB_TYPE = {
    label: "Neural Textures: Stylize Frames",
    description: "Stylize a folder of rendered frames with temporal consistency, in independent chunks",
    settings: [
        // What the artist chooses:
        { key: "style", type: "string", subtype: "file_path", required: true,
          description: "A trained style model (.safetensors: fast) or any painting (slow optimisation)" },
        { key: "method", type: "string", default: "auto",
          choices: ["auto", "model", "adain", "optimize"],
          description: "auto: a .safetensors style is a fast model, an image is optimised; adain: any painting in one pass" },
        { key: "input_dir", type: "string", subtype: "dir_path", required: true,
          eval: "str(Path(abspath(C.scene.render.filepath)).parent)",
          description: "Folder of rendered frames (numbered, e.g. frame_0001.exr; OpenEXR MultiLayer with the Vector pass for exact motion)" },
        { key: "output_dir", type: "string", subtype: "dir_path", required: true,
          description: "Folder for the stylized frames (named like the input frames)" },
        { key: "frames", type: "string", required: true,
          eval: "f'{C.scene.frame_start}-{C.scene.frame_end}'",
          description: "Frames to stylize, e.g. '1-250' or '1-100, 120-250'" },
        { key: "chunk_size", type: "int32", default: 24, propargs: {min: 1, max: 10000},
          description: "Frames per task" },
        { key: "warmup", type: "int32", default: 6, propargs: {min: 0, max: 1000},
          description: "Frames each task runs before its first frame and throws away (6: chunk borders flicker within 10% of the rest)" },
        { key: "overlap", type: "int32", default: 0, propargs: {min: 0, max: 1000},
          description: "Cross-fade this many frames with the neighbouring chunk (0: off)" },
        { key: "strength", type: "float", default: 1.0, propargs: {min: 0.0, max: 1.0},
          description: "0 keeps the render, 1 is the full style" },
        { key: "temporal_weight", type: "float", default: 0.7, propargs: {min: 0.0, max: 0.95},
          description: "How much each frame follows the previous one (less flicker)" },
        { key: "device", type: "string", default: "auto", visible: "submission",
          description: "auto (CUDA, then MPS, then CPU), cuda or cpu" },
        // Where the core lives on the workers (Manager variables, per platform):
        { key: "python", type: "string", default: "{neural_textures_python}", visible: "submission",
          description: "The worker's Python with the core's requirements" },
        { key: "core_dir", type: "string", default: "{neural_textures_core}", visible: "submission",
          description: "Folder holding the 'core' package on the workers" },
    ]
};

// Runs the core's CLI from `core_dir` without installing it: sys.argv[1] is that folder.
const LAUNCHER = "import sys; sys.path.insert(0, sys.argv.pop(1)); from core.cli import main; sys.exit(main(sys.argv[1:]))";

function compileJob(job) {
    print("Neural Textures stylize job submitted");
    const settings = job.settings;
    const chunkSize = Number(settings.chunk_size);
    const overlap = Number(settings.overlap || 0);
    if (!(chunkSize >= 1)) {
        throw `chunk_size must be at least 1, not ${settings.chunk_size}`;
    }
    if (overlap > chunkSize) {
        throw `overlap (${overlap}) cannot be longer than a chunk (${chunkSize} frames)`;
    }
    for (const chunk of frameChunker(settings.frames, chunkSize)) {
        const task = author.Task(`stylize-${chunk}`, "misc");
        for (const run of contiguousRuns(chunk)) {
            task.addCommand(author.Command("exec", {
                exe: settings.python,
                args: chunkArgs(settings, run),
            }));
        }
        job.addTask(task);
    }
}

// The core's chunk command for frames run[0]..run[1], one list element per argument.
function chunkArgs(settings, run) {
    return [
        "-c", LAUNCHER, settings.core_dir,
        "--device", String(settings.device || "auto"),
        "style", "apply",
        "--style", settings.style,
        "--method", String(settings.method || "auto"),
        "--input", settings.input_dir,
        "--out", settings.output_dir,
        "--frames", `${run[0]}-${run[1]}`,
        "--warmup", String(settings.warmup),
        "--overlap", String(settings.overlap || 0),
        "--strength", String(settings.strength),
        "--temporal-weight", String(settings.temporal_weight),
    ];
}

// frameChunker gives chunks like "1-24", "25,26" or "3,5-10"; the core takes one START-END per command.
function contiguousRuns(chunk) {
    const frames = [];
    for (const part of chunk.split(",")) {
        const ends = part.trim().split("-");
        const first = parseInt(ends[0], 10);
        const last = ends.length > 1 ? parseInt(ends[1], 10) : first;
        for (let f = first; f <= last; f++) {
            frames.push(f);
        }
    }
    frames.sort((a, b) => a - b);
    const runs = [];
    for (const f of frames) {
        const current = runs[runs.length - 1];
        if (current && f === current[1] + 1) {
            current[1] = f;
        } else {
            runs.push([f, f]);
        }
    }
    return runs;
}
