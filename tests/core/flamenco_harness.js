// Runs a Flamenco 3 job type's compileJob under Node with the Manager's documented authoring globals.
//
//   node flamenco_harness.js JOB_TYPE.js SETTINGS.json  ->  JSON {"job_type": ..., "tasks": [...]} on stdout
//
// Emulated after Flamenco's job compiler (internal/manager/job_compilers): `author.Task(name, type)`
// (both required, trimmed), `author.Command(name, parameters)`, `task.addCommand`, `task.addDependency`,
// `job.addTask`, `print`, `alert`, `formatTimestampLocal`, the `path` helpers, and `frameChunker(frames,
// chunkSize)`, which explodes "1-10,20..25" into sorted unique frames, cuts them into chunks of at most
// chunkSize frames and writes each chunk back with frameRangeMerge (a two-frame run becomes "5,6").
"use strict";
const fs = require("fs");
const nodePath = require("path");
const vm = require("vm");

function frameRangeExplode(range) {
    const frames = new Set();
    for (const part of range.replace(/\.\./g, "-").split(",")) {
        const ends = part.split("-");
        const parse = (s) => {
            const t = s.trim();
            if (!/^-?\d+$/.test(t)) throw new Error(`invalid range "${range}": ${part}`);
            return parseInt(t, 10);
        };
        if (ends.length === 1) {
            frames.add(parse(ends[0]));
        } else if (ends.length === 2) {
            for (let f = parse(ends[0]); f <= parse(ends[1]); f++) frames.add(f);
        } else {
            throw new Error(`invalid range "${range}": ${part}`);
        }
    }
    return Array.from(frames).sort((a, b) => a - b);
}

function frameRangeMerge(frames) {
    const ranges = [];
    const append = (from, to) => {
        if (from === to) ranges.push(String(from));
        else if (from + 1 === to) ranges.push(String(from), String(to));
        else ranges.push(`${from}-${to}`);
    };
    let start = frames[0], prev = frames[0];
    for (const f of frames) {
        if (f > prev + 1) {
            append(start, prev);
            start = f;
        }
        prev = f;
    }
    append(start, frames[frames.length - 1]);
    return ranges.join(",");
}

function frameChunker(range, chunkSize) {
    range = String(range).trim();
    if (!range) throw new Error("empty range");
    if (!(chunkSize >= 1)) throw new Error(`invalid chunk size, must be positive number: ${chunkSize}`);
    const frames = frameRangeExplode(range);
    const chunks = [];
    for (let i = 0; i < frames.length; i += chunkSize) chunks.push(frameRangeMerge(frames.slice(i, i + chunkSize)));
    return chunks;
}

const author = {
    Task(name, type) {
        name = String(name).trim();
        type = String(type).trim();
        if (!name) throw new Error("author.Task(name, type): name is required");
        if (!type) throw new Error("author.Task(name, type): type is required");
        const task = { name, type, commands: [], dependencies: [] };
        task.addCommand = (command) => { task.commands.push(command); };
        task.addDependency = (dep) => { task.dependencies.push(dep.name); };
        return task;
    },
    Command(name, parameters) {
        return { name, parameters };
    },
};

const path = {
    join: (...parts) => nodePath.posix.join(...parts),
    dirname: (p) => nodePath.posix.dirname(p),
    basename: (p) => nodePath.posix.basename(p),
    stem: (p) => nodePath.posix.basename(p, nodePath.posix.extname(p)),
};

const [scriptFile, settingsFile] = process.argv.slice(2);
const printed = [];
const context = vm.createContext({
    author, frameChunker, path,
    print: (...args) => printed.push(args.map(String).join(" ")),
    alert: (...args) => printed.push("ALERT " + args.map(String).join(" ")),
    formatTimestampLocal: (d) => new Date(d).toISOString().replace(/[:T]/g, "_").slice(0, 17),
});
vm.runInContext(fs.readFileSync(scriptFile, "utf8") + "\n;this.JOB_TYPE = JOB_TYPE;", context,
                { filename: scriptFile });
const tasks = [];
const job = { name: "test job", created: new Date(0), settings: JSON.parse(fs.readFileSync(settingsFile, "utf8")),
              addTask: (task) => tasks.push(task) };
context.compileJob(job);
const clean = tasks.map((t) => ({ name: t.name, type: t.type, commands: t.commands, dependencies: t.dependencies }));
process.stdout.write(JSON.stringify({ job_type: context.JOB_TYPE, tasks: clean, printed }));
