"""Layers and models on top of numbanets.functional (micrograd-style: forward stores, backward += grads).

    from numbanets import nn
    model = nn.Sequential(nn.Conv2D(1, 8, 3, padding="same", rng=rng), nn.ReLU(), nn.MaxPool2D(2),
                          nn.Flatten(), nn.Linear(8 * 14 * 14, 10, rng=rng))
    y = model.forward(x); model.zero_grad(); model.backward(dy)
"""

from numbanets.nn.layers import (Activation, Conv2D, Dropout, Flatten, GlobalAvgPool2D, Linear, MaxPool2D, ReLU,
                                 Sequential, Sigmoid, Tanh)
from numbanets.nn.models import CharLM
from numbanets.nn.module import Module
from numbanets.nn.recurrent import GRU, LSTM, RNN, GRULayer, LSTMLayer, RNNLayer

__all__ = ["Module", "Conv2D", "MaxPool2D", "GlobalAvgPool2D", "Linear", "Flatten", "Activation", "ReLU", "Tanh",
           "Sigmoid", "Dropout", "Sequential", "RNN", "LSTM", "GRU", "RNNLayer", "LSTMLayer", "GRULayer", "CharLM"]
