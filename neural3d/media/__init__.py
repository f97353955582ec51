"""Media: camera paths (:mod:`~neural3d.media.paths`), nerfstudio ``camera_path.json``
(:mod:`~neural3d.media.camera_path_json`), frames of a trained model (:mod:`~neural3d.media.frames`) and
image / video writing with colour maps (:mod:`~neural3d.media.video`)."""
