"""`nbnets heatmap`: where a trained CNN looks, by class activation mapping, Grad-CAM and occlusion.

    options.py   defaults, ranges and the checks of the options that need no network
    load.py      the network and its test images, from a train-cnn run folder, checkpoint or JSON snapshot
    network.py   the network's structure: its conv layers and blocks, the gap-fc ending CAM needs, the
                 forward pass that keeps a layer's output, the backward pass to it
    methods.py   the three maps (cam, gradcam, occlusion) and the bilinear upsampling to the image size
    sanity.py    Adebayo et al.'s model randomisation, the Grad-CAM/occlusion agreement, CAM = Grad-CAM
    figure.py    heatmaps.png: each image and its overlays, one shared colour bar
    command.py   the run: selects the images, computes and writes heatmaps.npz, heatmaps.png, sanity.csv

Imports point upward in that list. The network and images come through runner.cnn's public functions
(checkpoint.load, model.load_data, export_json.read); nothing here imports another command.
"""
