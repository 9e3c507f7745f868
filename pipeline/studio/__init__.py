"""dreamreel studio: a local web page to dream by eye, then run the long job from it.

``dreamreel studio [FOLDER]`` serves a Gradio app on 127.0.0.1 (``pip install "dreamreel[studio]"``).
Everything it does is a ``dreamreel`` command line, shown under each result:

- ``commands``: the page's settings as a command line, and paths confined to the studio's folder;
- ``board``: video and zoom jobs, each in its own process, listed from their folders, queued;
- ``runner``: the process that runs one job's command line through the Python API;
- ``app``: the page (Gradio) and its launch.

Nothing here imports Gradio or TensorFlow until the studio starts.
"""
