"""Reading and writing media and files, nothing about jobs: ``media`` (the one module that runs
ffmpeg: probe, scan, decode, encode chunks, join), ``decoders`` (a process's open decoders, read on in
order), ``imagefile`` (images in any depth, written whole), ``fsutil`` (atomic and durable writes),
``walk`` (the files under a folder, as `images` reads them)."""
