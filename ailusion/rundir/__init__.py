"""What a run dir is: the files a run writes, the rules for writing them, and how they are read.

A run dir holds one run (or one shard of a run) of one config:

- ``.ailusion.json`` and ``.ailusion.lock``: the config the dir was made with, and the lock of the
  run writing it (:mod:`.claim`);
- ``metadata.jsonl``, the manifest, one row per complete image, and the images it names
  (:mod:`.manifest`); the arrays, ``preprocessed.npy`` or the chunks ``preprocessed/NNNNN.npy`` of
  a big run (where they are, and how any reader reads them: :mod:`.arrays`),
  ``preprocessed_index.json``, ``predictions.npy``, ``predictions.json``, in place at the end of
  a run (:mod:`.outputs`);
- ``contact_sheet.png`` (and ``contact_sheet_2.png``…), the images at a glance (:mod:`.sheets`);
- what the stages write themselves (the model's weights) and Hydra's ``.hydra/``.

Every file appears complete or not at all (:mod:`.files`); ``ailusion merge`` joins the run dirs
of a run's shards into one (:mod:`.merge`).
"""
